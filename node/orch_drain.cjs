// orch_drain.cjs: loaded by orch into the Node workers of a cluster app
// (NODE_OPTIONS=--require, docs/ecosystem.md "Keep-alive drain"), so that
// stopping a worker (a reload, a restart, a stop) loses no request on a
// kept-alive connection.
//
// Why: when orch stops a worker it sends Node's cluster `disconnect`; the
// worker closes its servers, and Node's http.Server.close() destroys every
// idle keep-alive connection at once. A client that got a keep-alive
// response may already be sending its next request on such a connection:
// that request is lost (wrk counts a read error), and an HTTP client may
// only retry it if it knows it is idempotent.
//
// What this does instead, from the `disconnect` on (nothing changes before
// it): the servers stop accepting as before, but idle connections stay
// open; every response from then on says `Connection: close`, and Node
// closes its connection once it is written. Connections that send nothing
// more are closed when the drain time (ORCH_DRAIN_MS, set by orch from the
// app's keepalive_drain / kill_timeout) has passed; requests in progress
// still finish (until orch's kill_timeout). Then Node's own disconnect goes
// on: the channel closes and orch sends kill_signal.
//
// Inert outside a cluster worker (a program the worker starts inherits
// NODE_OPTIONS). Only public behaviour is relied on, save the one property
// res.shouldKeepAlive, which Node's http has had since its first versions.
'use strict';

(function orchDrain() {
  const key = Symbol.for('orch.drain');
  if (process[key]) return; // required twice (NODE_OPTIONS given twice)
  process[key] = true;
  const cluster = require('cluster');
  if (!cluster.isWorker) return;
  const ms = Number(process.env.ORCH_DRAIN_MS);
  const drainMs = Number.isFinite(ms) && ms >= 0 ? ms : 1000;

  let draining = false;
  let expired = false;
  const waiting = new Set(); // servers whose idle connections wait for the deadline

  function patch(proto) {
    const closeIdle = proto.closeIdleConnections;
    if (typeof closeIdle !== 'function' || closeIdle[key]) return;
    // http.Server.close() calls this: idle connections are kept until the
    // deadline, which calls the real one
    const deferred = function closeIdleConnections() {
      if (expired) return closeIdle.call(this);
      waiting.add(this);
      return undefined;
    };
    deferred[key] = closeIdle;
    proto.closeIdleConnections = deferred;
  }

  function start() {
    if (draining) return;
    draining = true;
    // Node's own modules, only if the app has loaded them (a server of
    // theirs exists only then): loading https would cost memory for nothing.
    const list = Array.isArray(process.moduleLoadList) ? process.moduleLoadList : null;
    const loaded = (name) => !list || list.includes(`NativeModule ${name}`);
    if (!loaded('http')) return;
    const http = require('http');
    patch(http.Server.prototype);
    if (loaded('https')) patch(require('https').Server.prototype);
    // Every response from now on ends its connection (http and https share
    // ServerResponse); writeHead runs before Node writes the headers, also
    // for res.end() without it (_implicitHeader).
    const Res = http.ServerResponse.prototype;
    const writeHead = Res.writeHead;
    Res.writeHead = function orchDrainWriteHead() {
      if (!this.headersSent) this.shouldKeepAlive = false;
      return writeHead.apply(this, arguments);
    };
    setTimeout(() => {
      expired = true;
      for (const server of waiting) server.closeIdleConnections();
      waiting.clear();
    }, drainMs).unref();
  }

  // Before Node's own listener (cluster's child side), which closes the
  // servers at once: the patches must be in place by then.
  process.prependListener('internalMessage', (msg) => {
    if (!(msg && msg.cmd === 'NODE_CLUSTER' && msg.act === 'disconnect')) return;
    try {
      start();
    } catch (err) {
      // never in the way of Node's own disconnect, which follows
      process.emitWarning(`orch drain: ${err && err.message}`);
    }
  });
})();
