-- The environment Redis 7 gives scripts, built once per VM (SCRIPT FLUSH makes a new VM).
-- Runs with the debug library still loaded and receives:
--   R      the host's private table: this chunk adds R.run, R.hidden and R.protect, and
--          host functions leave the error table they raise in R.err;
--   native the host's functions: call/pcall (which run a command in the run in progress
--          and, for call, raise its error), sha1hex, log, setresp, set_repl, acl_check_cmd;
--   version, version_num.
-- The globals table becomes read-only: its contents move to a hidden table it reads
-- through, and every library table is replaced by a read-only proxy. Stock Lua 5.1 has no
-- read-only tables (Redis patches its copy), so the builtins that could write through a
-- proxy (rawset, setmetatable, setfenv) refuse proxies, and the ones that read (rawget,
-- next, pairs, ipairs) see through them.
local R, native, version, version_num = ...

local G = _G
local getinfo = debug.getinfo
local type, error, tostring, select = type, error, tostring, select
local raw_rawget, raw_rawset, raw_next = rawget, rawset, next
local raw_setmetatable, raw_setfenv, raw_loadstring = setmetatable, setfenv, loadstring
local string_byte, string_sub = string.byte, string.sub
local INTERNAL = '=recached'

local READONLY = 'Attempt to modify a readonly table'

-- proxy -> the table it shows
local real = raw_setmetatable({}, { __mode = 'k' })

local function refuse()
  error(READONLY, 2)
end

local function protect(t)
  local proxy = {}
  local shown = {}
  raw_setmetatable(shown, { __index = t, __newindex = refuse })
  local mt = { __index = t, __newindex = refuse, __metatable = shown }
  real[shown] = t
  raw_setmetatable(proxy, mt)
  real[proxy] = t
  return proxy
end

local function unwrap(t)
  return real[t] or t
end

-- The Lua error handler of every run: finds the innermost frame of the user's code (not a
-- C function, not this chunk) and records where the error happened, as Redis does.
local function handler(err)
  local level, at = 2, nil
  while true do
    local i = getinfo(level, 'Sl')
    if not i then break end
    if i.what ~= 'C' and i.source ~= INTERNAL and i.source ~= '=(tail call)' then
      at = i
      break
    end
    level = level + 1
  end
  -- redis.call is a host (C) function, so that a tail call does not hide the caller's
  -- line; the error table it raises waits in R.err.
  local pending = R.err
  if pending ~= nil then
    R.err = nil
    err = pending
  elseif type(err) == 'userdata' and native.errmsg(err) then
    -- A library function (host code) failed: its message, placed like luaL_error's,
    -- at the line of the Lua code that called it.
    local caller = getinfo(3, 'Sl')
    local where = ''
    if caller and caller.what ~= 'C' and caller.source ~= INTERNAL and caller.currentline > 0 then
      where = caller.short_src .. ':' .. caller.currentline .. ': '
    end
    err = { err = 'ERR ' .. where .. native.errmsg(err) }
  elseif type(err) ~= 'table' then
    err = { err = 'ERR ' .. tostring(err) }
  end
  if at then
    err.source = at.source
    err.line = at.currentline
  end
  return err
end

local run_xpcall = xpcall
function R.run(f)
  R.err = nil
  return run_xpcall(f, handler)
end

-- A function (FCALL) gets its keys and arguments as two tables.
function R.run_with(f, keys, args)
  R.err = nil
  return run_xpcall(function() return f(keys, args) end, handler)
end

local function err_table(text)
  return { err = text }
end


local redis = {}

-- Host functions, so that a tail call to them keeps the caller's line in error replies.
redis.call = native.call
redis.pcall = native.pcall
redis.sha1hex = native.sha1hex
redis.log = native.log
redis.setresp = native.setresp
redis.set_repl = native.set_repl
redis.acl_check_cmd = native.acl_check_cmd

local function single_field(field, n, s)
  if n ~= 1 or type(s) ~= 'string' then
    return err_table('ERR wrong number or type of arguments')
  end
  return { [field] = s }
end

function redis.status_reply(...)
  return single_field('ok', select('#', ...), ...)
end

-- "-CODE message" keeps its code; a message without one gets ERR.
local function error_text(s)
  if string_byte(s, 1) == 45 then s = string_sub(s, 2) end
  local code, msg = s:match('^(%S*) (.*)$')
  if not code then code, msg = 'ERR', s end
  msg = msg:gsub('[\r\n]+$', '')
  return code .. ' ' .. msg
end

function redis.error_reply(...)
  local n, s = select('#', ...), ...
  if n ~= 1 or type(s) ~= 'string' then
    return err_table('ERR wrong number or type of arguments')
  end
  return { err = error_text(s) }
end

redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING = 0, 1, 2, 3

redis.REPL_NONE, redis.REPL_AOF, redis.REPL_SLAVE, redis.REPL_REPLICA, redis.REPL_ALL = 0, 1, 2, 2, 3

function redis.replicate_commands()
  return true
end

function redis.breakpoint()
  return false
end

function redis.debug()
end

redis.REDIS_VERSION = version
redis.REDIS_VERSION_NUM = version_num

G.redis = redis

-- Builtins that would write through a proxy, and readers that should see through one.
local hidden = {}
local function is_protected(t)
  return t == G or real[t] ~= nil or t == hidden
end

G.rawset = function(t, k, v)
  if is_protected(t) then error(READONLY, 0) end
  return raw_rawset(t, k, v)
end
G.setmetatable = function(t, mt)
  if is_protected(t) then error(READONLY, 0) end
  return raw_setmetatable(t, mt)
end
G.setfenv = function(f, env)
  if f == 0 or type(f) == 'thread' then error(READONLY, 0) end
  return raw_setfenv(f, env)
end
G.rawget = function(t, k)
  if t == G then t = hidden end
  return raw_rawget(unwrap(t), k)
end
local function next_(t, k)
  if t == G then t = hidden end
  return raw_next(unwrap(t), k)
end
G.next = next_
G.pairs = function(t)
  return next_, t, nil
end
G.ipairs = function(t)
  local shown = unwrap(t == G and hidden or t)
  local i = 0
  return function()
    i = i + 1
    local v = shown[i]
    if v ~= nil then return i, v end
  end
end
-- pcall/xpcall catch redis.call's errors as the table it left in R.err.
local raw_pcall, raw_xpcall = pcall, xpcall
local function settle(ok, ...)
  -- As Redis's pcall: an error table with a message gives the message.
  if not ok then
    local e = ...
    -- A killed script cannot catch its way out of SCRIPT KILL.
    if native.killed() then error(e, 0) end
    if R.err ~= nil then
      e = R.err
      R.err = nil
    elseif type(e) == 'userdata' and native.errmsg(e) then
      return false, native.errmsg(e)
    end
    if type(e) == 'table' and type(e.err) == 'string' then
      return false, e.err
    end
    return false, e
  end
  return ok, ...
end
G.pcall = function(f, ...)
  return settle(raw_pcall(f, ...))
end
local function settle_x(ok, ...)
  if not ok and native.killed() then error((...), 0) end
  return ok, ...
end
G.xpcall = function(f, h)
  return settle_x(raw_xpcall(f, function(e)
    if native.killed() then return e end
    if R.err ~= nil then
      e = R.err
      R.err = nil
    elseif type(e) == 'userdata' and native.errmsg(e) then
      e = native.errmsg(e)
    end
    return h(e)
  end))
end
-- Binary chunks are refused, as in Redis (their bytecode is not verified).
local function text_only(s, name)
  if type(s) == 'string' and string_byte(s, 1) == 27 then
    return nil, 'binary chunks are not allowed'
  end
  return raw_loadstring(s, name)
end
G.loadstring = text_only
G.load = function(f, name)
  local parts = {}
  while true do
    local piece = f()
    if piece == nil or piece == '' then break end
    parts[#parts + 1] = piece
  end
  return text_only(table.concat(parts), name)
end

G.print, G.dofile, G.loadfile, G.module, G.require = nil, nil, nil, nil, nil
G.debug = nil

for _, name in ipairs({ 'string', 'table', 'math', 'coroutine', 'redis', 'cjson', 'bit', 'struct', 'cmsgpack' }) do
  local t = raw_rawget(G, name)
  if t ~= nil then raw_rawset(G, name, protect(t)) end
end
-- Strings' metatable leads to the string library: show the proxy there too.
local smt = getmetatable('')
if smt then
  raw_rawset(smt, '__index', raw_rawget(G, 'string'))
  raw_rawset(smt, '__metatable', protect({ __index = raw_rawget(G, 'string') }))
end

-- Everything moves to the hidden table; the globals table reads through it and refuses
-- writes, and a missing global is an error.
for k, v in raw_next, G do
  hidden[k] = v
end
for k in raw_next, hidden do
  G[k] = nil
end
hidden._G = G
raw_setmetatable(hidden, {
  __index = function(_, name)
    error("Script attempted to access nonexistent global variable '" .. tostring(name) .. "'", 2)
  end,
})
local shown_meta = protect({ __index = hidden })
local gmeta = { __index = hidden, __newindex = refuse, __metatable = shown_meta }
raw_setmetatable(G, gmeta)

-- What a library's code sees while FUNCTION LOAD runs it: only `redis` with
-- register_function, log and the version (as Redis 7.0); the callbacks it registers run
-- later with the full globals.
local function missing(_, name)
  error("Script attempted to access nonexistent global variable '" .. tostring(name) .. "'", 2)
end
local libredis = {
  register_function = native.register_function,
  log = native.log,
  LOG_DEBUG = 0, LOG_VERBOSE = 1, LOG_NOTICE = 2, LOG_WARNING = 3,
  REDIS_VERSION = version,
  REDIS_VERSION_NUM = version_num,
}
raw_setmetatable(libredis, { __index = missing })
local libapi = { redis = protect(libredis) }
raw_setmetatable(libapi, { __index = missing })
function R.loading(on)
  gmeta.__index = on and libapi or hidden
end

R.hidden = hidden
R.protect = protect
