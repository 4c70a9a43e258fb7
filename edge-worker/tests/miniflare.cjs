// Starts the built edge worker (../build/index.js) under Miniflare 4 on 127.0.0.1 and
// makes sure workerd dies with this process, even on SIGKILL (the conformance suites kill
// their hub that way): a detached watcher kills workerd once this process is gone.
'use strict';
const fs = require('fs');
const path = require('path');
const { spawn } = require('child_process');
const { Miniflare } = require('miniflare');

const BUILD = path.join(__dirname, '..', 'build');
const CLASS = 'RecachedHub';
const BINDING = 'RECACHED_HUB';

/** Child pids of this process (workerd), from /proc. */
function childPids() {
  const out = [];
  try {
    for (const t of fs.readdirSync(`/proc/${process.pid}/task`)) {
      const c = fs.readFileSync(`/proc/${process.pid}/task/${t}/children`, 'utf8').trim();
      if (c) out.push(...c.split(/\s+/).map(Number));
    }
  } catch (_) {}
  return out;
}

function watchdog(pids) {
  if (!pids.length) return;
  const w = spawn('sh', ['-c', `while kill -0 ${process.pid} 2>/dev/null; do sleep 0.3; done; kill -9 ${pids.join(' ')} 2>/dev/null`], {
    detached: true,
    stdio: 'ignore',
  });
  w.unref();
}

/**
 * Starts the worker. `vars`: Worker vars (strings); `persist`: a directory for Durable
 * Object storage, or false for memory only; `port`: 0 for a free one.
 * Returns { mf, url (http://127.0.0.1:p), runtimePids }.
 */
async function start({ vars = {}, persist = false, port = 0, log = false } = {}) {
  const mf = new Miniflare({
    name: 'recached-edge',
    scriptPath: path.join(BUILD, 'index.js'),
    modules: true,
    // Module paths are resolved below this root (the suites run with another cwd).
    modulesRoot: BUILD,
    modulesRules: [{ type: 'CompiledWasm', include: ['**/*.wasm'], fallthrough: true }],
    compatibilityDate: '2026-04-01',
    durableObjects: { [BINDING]: { className: CLASS, useSQLite: true } },
    durableObjectsPersist: persist,
    bindings: vars,
    host: '127.0.0.1',
    port,
    verbose: !!log,
  });
  const url = await mf.ready;
  const runtimePids = childPids();
  watchdog(runtimePids);
  return { mf, url: url.toString().replace(/\/$/, ''), runtimePids };
}

/** Evicts a namespace's object with its WebSockets kept (hibernation). */
async function hibernate(mf, ns) {
  try {
    await mf.unsafeEvictDurableObject('recached-edge', CLASS, { name: ns, webSockets: 'hibernate' });
  } catch (e) {
    // Already evicted (idle, or after its alarm): the state we want.
    if (!/not currently running/.test(String(e && e.message))) throw e;
  }
}

module.exports = { start, hibernate, CLASS, BINDING };
