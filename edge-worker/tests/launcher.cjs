#!/usr/bin/env node
// The edge hub as a conformance-suite target (sync-hub/tests/README.md, "Running the
// suites against another hub"): takes the native hub's flags, maps the sync ones to Worker
// vars (--sync-backlog-bytes N → SYNC_BACKLOG_BYTES=N), starts the built worker under
// Miniflare on a free loopback port with a fresh namespace, prints the ready line and runs
// in the foreground until killed.
'use strict';
const { start } = require('./miniflare.cjs');

const vars = {};
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (!a.startsWith('--')) continue;
  const name = a.slice(2);
  const value = argv[i + 1] !== undefined && !argv[i + 1].startsWith('--') ? argv[++i] : '';
  if (name.startsWith('sync-')) vars[name.toUpperCase().replace(/-/g, '_')] = value;
  // --port/--ws-port/--bind: the worker listens where Miniflare puts it (127.0.0.1, free port).
}

(async () => {
  const ns = `t${process.pid}-${Date.now() % 1e6}`;
  const { mf, url, runtimePids } = await start({ vars, log: !!process.env.RECACHED_EDGE_LOG });
  const ws = url.replace(/^http/, 'ws');
  console.log(`edge hub: miniflare ${url}, namespace ${ns}, vars ${Object.keys(vars).join(' ') || '(none)'}`);
  // What a Durable Object cannot do, for the suites to skip those checks loudly.
  console.log('Hub lacks outbound-bound (a Durable Object cannot see its sockets\' send buffers)');
  console.log('Hub lacks tcp-close (the runtime owns the connection: after broken framing the object can only send a close frame)');
  console.log('Hub lacks rss-bound (wasm linear memory never shrinks; the runtime\'s JS heap is collected lazily)');
  if (runtimePids.length === 1) console.log(`Hub process pid=${runtimePids[0]}`);
  console.log(`Ready to accept connections ws url=${ws}/v1/ns/${ns}/ws`);
  const stop = () => {
    // dispose() can hang with sockets open; the runtime is ours to kill.
    for (const pid of runtimePids) { try { process.kill(pid, 'SIGKILL'); } catch (_) {} }
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
})().catch((e) => {
  console.error('edge launcher failed:', e);
  process.exit(1);
});
