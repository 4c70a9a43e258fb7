"""kill -9 loop: nothing acknowledged is lost under `appendfsync always`.

usage: crash_loop.py HUB_BINARY [--rounds N] [--seconds S] [--fsync always|everysec|no]

Each round starts the hub on the same data directory, runs writers on several
connections (SET, INCR, pipelined RPUSH, HSET, MULTI/EXEC, DEL), SIGKILLs the hub at a
random moment while they write, restarts it and checks that every write whose reply
arrived is there (and that no transaction is half applied). Under `everysec` and `no`
the same holds, since kill -9 does not lose what write(2) handed to the kernel.
Prints one line per round and a summary; exits 1 on the first lost write.
"""
import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time

import redis

ap = argparse.ArgumentParser()
ap.add_argument("bin")
ap.add_argument("--rounds", type=int, default=4)
ap.add_argument("--seconds", type=float, default=1.5)
ap.add_argument("--fsync", default="always")
ap.add_argument("--seed", type=int, default=int(time.time()))
args = ap.parse_args()
rng = random.Random(args.seed)
DATA = tempfile.mkdtemp(prefix="rc-crash-")
LOG = open(os.path.join(tempfile.mkdtemp(prefix="rc-crash-log-"), "hub.log"), "ab")


def start():
    p = subprocess.Popen(
        [args.bin, "--port", "0", "--ws-port", "0", "--dir", DATA, "--appendonly", "yes", "--appendfsync", args.fsync],
        stdout=subprocess.PIPE,
        stderr=LOG,
    )
    deadline = time.time() + 60
    port = None
    while time.time() < deadline:
        line = p.stdout.readline().decode()
        if not line:
            raise SystemExit(f"hub exited at start with {p.wait()} (log: {LOG.name})")
        if "tcp port=" in line:
            port = int(line.rsplit("=", 1)[1])
        if "ws port=" in line:
            return p, port
    p.kill()
    raise SystemExit("hub not ready")


class Acked:
    """What the writers saw acknowledged, per writer."""

    def __init__(self):
        self.sets = {}  # key -> value
        self.ctr = {}  # key -> last INCR reply
        self.lists = {}  # key -> acked length
        self.hash_fields = {}  # hash key -> set of fields
        self.tx = {}  # pair name -> acked count
        self.deleted = set()


acked = Acked()
lock = threading.Lock()
# The key each writer's unanswered command may have changed (applied or not: both are fine).
inflight = {}


def writer(n, port, stop, rnd):
    r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
    i = 0
    try:
        while not stop.is_set():
            i += 1
            op = rnd.randrange(6)
            if op == 0:
                key, val = f"w{n}:s:{rnd.randrange(200)}", f"{n}-{i}"
                inflight[n] = key
                r.set(key, val)
                with lock:
                    acked.sets[key] = val.encode()
                    acked.deleted.discard(key)
            elif op == 1:
                key = f"w{n}:ctr"
                v = r.incr(key)
                with lock:
                    acked.ctr[key] = v
            elif op == 2:
                key = f"w{n}:list"
                p = r.pipeline(transaction=False)
                for j in range(10):
                    p.rpush(key, f"{i}.{j}")
                lens = p.execute()
                with lock:
                    acked.lists[key] = lens[-1]
            elif op == 3:
                key, field = f"w{n}:h", f"f{i}"
                r.hset(key, field, i)
                with lock:
                    acked.hash_fields.setdefault(key, set()).add(field.encode())
            elif op == 4:
                with r.pipeline(transaction=True) as t:
                    t.incr(f"w{n}:tx:a")
                    t.incr(f"w{n}:tx:b")
                    a, _ = t.execute()
                with lock:
                    acked.tx[f"w{n}:tx"] = a
            else:
                key = f"w{n}:s:{rnd.randrange(200)}"
                inflight[n] = key
                r.delete(key)
                with lock:
                    acked.sets.pop(key, None)
                    acked.deleted.add(key)
    except (redis.ConnectionError, redis.TimeoutError, ConnectionResetError):
        return


def verify(port):
    r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=30)
    lost = []
    with lock:
        unsure = set(inflight.values())
        for k, v in list(acked.sets.items()):
            got = r.get(k)
            if got == v:
                continue
            if k in unsure:
                # The writer's last command, unanswered, touched it: either outcome is fine.
                if got is None:
                    acked.sets.pop(k)
                else:
                    acked.sets[k] = got
                continue
            lost.append(f"SET {k}: acknowledged {v!r}, found {got!r}")
        for k in list(acked.deleted):
            if k not in unsure and r.exists(k):
                lost.append(f"DEL {k}: acknowledged, but the key is back")
        # What the unanswered commands did is now known: it is the state to check next.
        for k in unsure:
            got = r.get(k)
            if got is None:
                acked.sets.pop(k, None)
                acked.deleted.add(k)
            else:
                acked.sets[k] = got
                acked.deleted.discard(k)
        inflight.clear()
        for k, v in acked.ctr.items():
            got = int(r.get(k) or 0)
            if not v <= got <= v + 1:
                lost.append(f"INCR {k}: acknowledged {v}, found {got}")
            acked.ctr[k] = got
        for k, n in acked.lists.items():
            got = r.llen(k)
            if got < n:
                lost.append(f"RPUSH {k}: acknowledged length {n}, found {got}")
            acked.lists[k] = got
        for k, fields in acked.hash_fields.items():
            have = set(r.hkeys(k))
            missing = fields - have
            if missing:
                lost.append(f"HSET {k}: {len(missing)} acknowledged fields missing")
        for k, n in acked.tx.items():
            a, b = int(r.get(f"{k}:a") or 0), int(r.get(f"{k}:b") or 0)
            if a != b:
                lost.append(f"MULTI {k}: half applied ({a} vs {b})")
            if a < n:
                lost.append(f"MULTI {k}: acknowledged {n}, found {a}")
            acked.tx[k] = a
    return lost


def main():
    print(f"crash loop: {args.rounds} rounds of ~{args.seconds}s, appendfsync {args.fsync}, seed {args.seed}, data {DATA}")
    total_ops = 0
    for rnd_no in range(1, args.rounds + 1):
        p, port = start()
        if rnd_no > 1:
            lost = verify(port)
            if lost:
                print(f"round {rnd_no}: LOST after restart:\n  " + "\n  ".join(lost[:20]))
                p.kill()
                sys.exit(1)
        stop = threading.Event()
        threads = [threading.Thread(target=writer, args=(n, port, stop, random.Random(rng.random()))) for n in range(5)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(args.seconds * 0.3, args.seconds))
        p.kill()
        p.wait()
        stop.set()
        for t in threads:
            t.join(timeout=30)
        ops = sum(acked.ctr.values()) + sum(acked.lists.values()) // 10
        print(f"round {rnd_no}: SIGKILL after writes (counters+lists acked so far ~{ops})", flush=True)
        total_ops = ops
    p, port = start()
    lost = verify(port)
    p.kill()
    p.wait()
    if lost:
        print("LOST after the last restart:\n  " + "\n  ".join(lost[:20]))
        sys.exit(1)
    print(f"PASS crash_loop: {args.rounds} SIGKILLs, every acknowledged write survived (~{total_ops} counted writes)")


main()
