#!/usr/bin/env bash
# redis-cli (Debian redis-tools) against the server under test.
# usage: redis_cli.sh PORT AUTH_PORT PASSWORD   (AUTH_PORT runs with --requirepass)
# Runs every check, prints PASS/FAIL per check, exits 1 if any failed.
set -uo pipefail
PORT=$1
AUTH_PORT=$2
PASSWORD=$3
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"; jobs -p | xargs -r kill 2>/dev/null' EXIT
# Every redis-cli call is bounded.
cli() { timeout 20 redis-cli -h 127.0.0.1 -p "$PORT" "$@"; }
fails=0
total=0
check() { # name expected actual
  total=$((total + 1))
  if [ "$2" == "$3" ]; then
    echo "PASS ${1// /-}"
  else
    fails=$((fails + 1))
    echo "FAIL ${1// /-}"
    echo "  expected: $(printf %q "$2")"
    echo "  actual:   $(printf %q "$3")"
  fi
}
check_file() { # name expected-file actual-file
  total=$((total + 1))
  if cmp -s "$2" "$3"; then
    echo "PASS ${1// /-}"
  else
    fails=$((fails + 1))
    echo "FAIL ${1// /-}: $(cmp "$2" "$3" 2>&1 | head -1) (sizes $(stat -c %s "$2") $(stat -c %s "$3"))"
  fi
}

check "ping" "PONG" "$(redis-cli -p "$PORT" ping)"
check "ping with message" "hello" "$(cli ping hello)"
cli flushall >/dev/null

# --- every data type -------------------------------------------------------------------
check "set" "OK" "$(cli set s:a 41)"
check "incr" "42" "$(cli incr s:a)"
check "get" "42" "$(cli get s:a)"
check "get missing (no tty)" "" "$(cli get s:none)"
check "get missing (--no-raw)" "(nil)" "$(cli --no-raw get s:none)"
check "incrbyfloat" "3.75" "$(cli incrbyfloat s:f 3.75)"
check "mset/mget" $'x\ny' "$(cli mset s:1 x s:2 y >/dev/null; cli mget s:1 s:2 s:none)"
check "rpush" "3" "$(cli rpush l:a a b c)"
check "lrange" $'a\nb\nc' "$(cli lrange l:a 0 -1)"
check "lpop count" $'a\nb' "$(cli lpop l:a 2)"
check "hset" "2" "$(cli hset h:a f1 v1 f2 v2)"
check "hgetall" $'f1\nv1\nf2\nv2' "$(cli hgetall h:a)"
check "hincrby" "5" "$(cli hincrby h:a n 5)"
check "sadd" "3" "$(cli sadd st:a x y z)"
check "smembers" $'x\ny\nz' "$(cli smembers st:a | sort)"
check "sismember" "1" "$(cli sismember st:a y)"
check "zadd" "3" "$(cli zadd z:a 1 a 2.5 b 3 c)"
check "zrange withscores" $'a\n1\nb\n2.5\nc\n3' "$(cli zrange z:a 0 -1 withscores)"
check "zscore" "2.5" "$(cli zscore z:a b)"
check "type" $'string\nlist\nhash\nset\nzset\nnone' \
  "$(for k in s:a l:a h:a st:a z:a nope; do cli type $k; done)"
check "wrongtype" "WRONGTYPE Operation against a key holding the wrong kind of value" "$(cli get l:a)"
check "unknown command" "ERR unknown command 'NOSUCH', with args beginning with: 'x' " "$(cli NOSUCH x)"
check "wrong arity" "ERR wrong number of arguments for 'get' command" "$(cli get)"

# --- expiry -------------------------------------------------------------------------------
cli set e:a v px 150 >/dev/null
cli set e:b v ex 100 >/dev/null
check "ttl" "100" "$(cli ttl e:b)"
check "expire missing" "0" "$(cli expire e:none 10)"
sleep 0.4
check "expired" "0" "$(cli exists e:a)"
check "persist" "1" "$(cli persist e:b)"
check "ttl after persist" "-1" "$(cli ttl e:b)"

# --- RESP3 (-3) -----------------------------------------------------------------------
check "resp3 hgetall" '1# "f1" => "v1"
2# "f2" => "v2"
3# "n" => "5"' "$(cli -3 --no-raw hgetall h:a)"
check "resp3 zscore (double)" '(double) 2.5' "$(cli -3 --no-raw zscore z:a b)"
check "resp3 nil" '(nil)' "$(cli -3 --no-raw get s:none)"

# --- --pipe with 10,000 commands --------------------------------------------------------
python3 - "$TMP/pipe.txt" <<'EOF'
import sys
with open(sys.argv[1], "wb") as f:
    for i in range(10000):
        k, v = f"pipe:{i}".encode(), f"v{i}\r\n\0".encode()
        f.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v))
EOF
out=$(cli --pipe < "$TMP/pipe.txt" 2>&1)
check "--pipe summary" "errors: 0, replies: 10000" "$(echo "$out" | grep -o 'errors: [0-9]*, replies: [0-9]*')"
check "--pipe keys" "10000" "$(cli --scan --pattern 'pipe:*' | wc -l)"
check "--pipe value" '"v9999\r\n\x00"' "$(cli --no-raw get pipe:9999)"
# Inline commands through --pipe too (what `cat cmds.txt | redis-cli --pipe` users do).
printf 'SET pipe:inline 1\r\nINCR pipe:inline\r\n' > "$TMP/inline.txt"
out=$(cli --pipe < "$TMP/inline.txt" 2>&1)
check "--pipe inline" "errors: 0, replies: 2" "$(echo "$out" | grep -o 'errors: [0-9]*, replies: [0-9]*')"
check "--pipe inline value" "2" "$(cli get pipe:inline)"

# --- binary-safe values -----------------------------------------------------------------
printf 'a\r\n\0b\r\n$3\r\n*1\r\n\377' > "$TMP/bin"
check "set -x binary" "OK" "$(cli -x set bin:a < "$TMP/bin")"
cli --raw get bin:a | head -c -1 > "$TMP/bin.out" # --raw appends a newline
check_file "get binary" "$TMP/bin" "$TMP/bin.out"
check "binary escaped" '"a\r\n\x00b\r\n$3\r\n*1\r\n\xff"' "$(cli --no-raw get bin:a)"
check "strlen binary" "16" "$(cli strlen bin:a)"
head -c 1048576 /dev/urandom > "$TMP/big"
check "set -x 1MB" "OK" "$(cli -x set bin:big < "$TMP/big")"
cli --raw get bin:big | head -c -1 > "$TMP/big.out"
check_file "get 1MB" "$TMP/big" "$TMP/big.out"
check "strlen 1MB" "1048576" "$(cli strlen bin:big)"

# --- MULTI/EXEC/WATCH --------------------------------------------------------------------
check "multi/exec" $'OK\nQUEUED\nQUEUED\n1\n2' "$(printf 'MULTI\nINCR tx:c\nINCR tx:c\nEXEC\n' | cli)"
check "exec abort" $'OK\nQUEUED\nERR wrong number of arguments for \'incr\' command\n\nEXECABORT Transaction discarded because of previous errors.' \
  "$(printf 'MULTI\nINCR tx:c\nINCR\nEXEC\n' | cli)"
# WATCH in one session, a change from another, EXEC returns nil.
{
  printf 'WATCH tx:w\nMULTI\nSET tx:w mine\n'
  sleep 0.3
  printf 'EXEC\nGET tx:w\n'
} | cli > "$TMP/watch.out" &
sleep 0.15
cli set tx:w theirs >/dev/null
wait $!
check "watch abort" $'OK\nOK\nQUEUED\n\ntheirs' "$(cat "$TMP/watch.out")"

# --- pub/sub with patterns ----------------------------------------------------------------
(timeout 3 redis-cli -p "$PORT" psubscribe 'news.*' 'h?llo' > "$TMP/psub.out") &
psub=$!
for _ in $(seq 50); do [ "$(cli pubsub numpat)" == "2" ] && break; sleep 0.05; done
check "publish to pattern" "1" "$(cli publish news.tech 'hi there')"
check "publish to h?llo" "1" "$(cli publish hello x)"
check "publish no match" "0" "$(cli publish other x)"
sleep 0.3
kill $psub 2>/dev/null; wait $psub 2>/dev/null
check "psubscribe output" $'psubscribe\nnews.*\n1\npsubscribe\nh?llo\n2\npmessage\nnews.*\nnews.tech\nhi there\npmessage\nh?llo\nhello\nx' "$(cat "$TMP/psub.out")"
(timeout 3 redis-cli -p "$PORT" subscribe ch1 > "$TMP/sub.out") &
sub=$!
for _ in $(seq 50); do [ "$(cli pubsub numsub ch1 | tail -1)" == "1" ] && break; sleep 0.05; done
check "publish to channel" "1" "$(cli publish ch1 m1)"
sleep 0.3
kill $sub 2>/dev/null; wait $sub 2>/dev/null
check "subscribe output" $'subscribe\nch1\n1\nmessage\nch1\nm1' "$(cat "$TMP/sub.out")"

# --- blocking pops with timeouts ------------------------------------------------------------
start=$(date +%s%N)
out=$(cli --no-raw blpop bl:none 0.5)
ms=$(( ($(date +%s%N) - start) / 1000000 ))
check "blpop timeout reply" "(nil)" "$out"
check "blpop waited ~0.5s" "yes" "$([ $ms -ge 400 ] && [ $ms -lt 2500 ] && echo yes || echo "no (${ms}ms)")"
(sleep 0.3; cli rpush bl:l v >/dev/null) &
check "blpop woken" $'bl:l\nv' "$(cli blpop bl:l 5)"
wait
(sleep 0.3; cli zadd bl:z 1 m >/dev/null) &
check "bzpopmin woken" $'bl:z\nm\n1' "$(cli bzpopmin bl:z 5)"
wait

# --- misc tooling ----------------------------------------------------------------------------
check "-r repeat" "" "$(cli -r 100 incr rep:c >/dev/null)"
check "-r result" "100" "$(cli get rep:c)"
check "info loading" "loading:0" "$(cli info persistence | tr -d '\r' | grep '^loading:')"
check "dbsize" "yes" "$([ "$(cli dbsize)" -gt 10000 ] && echo yes)"
# CLIENT KILL: the victim session sees the close; new connections work at once.
{ printf 'CLIENT SETNAME victim\nCLIENT ID\n'; sleep 0.6; printf 'PING\n'; } | cli > "$TMP/victim.out" 2>&1 &
victim=$!
for _ in $(seq 40); do [ -n "$(sed -n 2p "$TMP/victim.out")" ] && break; sleep 0.05; done
check "client list shows name" "name=victim" "$(cli client list | grep -o 'name=victim')"
check "client kill id" "1" "$(cli client kill id "$(sed -n 2p "$TMP/victim.out")")"
wait $victim
check "killed session" "Error: Server closed the connection" "$(sed -n 3p "$TMP/victim.out")"
check "reconnect after kill" "PONG" "$(cli ping)"

# --- AUTH -------------------------------------------------------------------------------------
acli() { timeout 20 redis-cli -h 127.0.0.1 -p "$AUTH_PORT" --no-auth-warning "$@"; }
check "noauth" "NOAUTH Authentication required." "$(acli get x)"
check "wrong password" "AUTH failed: WRONGPASS invalid username-password pair or user is disabled." "$(acli -a wrong ping 2>&1 | head -1)"
check "-a password" "PONG" "$(acli -a "$PASSWORD" ping)"
check "--user default" "PONG" "$(acli --user default --pass "$PASSWORD" ping)"
check "AUTH command" $'OK\nPONG' "$(printf 'AUTH %s\nPING\n' "$PASSWORD" | acli)"
check "AUTH default pass" $'OK\nPONG' "$(printf 'AUTH default %s\nPING\n' "$PASSWORD" | acli)"
check "HELLO 3 AUTH" "yes" "$(acli hello 3 auth default "$PASSWORD" | grep -q proto && echo yes)"

echo "redis-cli $(redis-cli --version | awk '{print $2}'): $((total - fails))/$total checks passed"
[ "$fails" -eq 0 ]
