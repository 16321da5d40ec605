/*
 * A Web Worker of the /join page: computes one interval at a time with kernel.js (the same file
 * the tests check bit for bit against the Rust kernel) and posts the fields of protocol v1's
 * `result` message back. Loaded from the server's own origin (the page's CSP forbids blob:
 * workers).
 *
 * in:  {id, a, b}          decimal strings, as in the `assign` message
 * out: {ok: true, result}  or {ok: false, id, message}
 */
'use strict';
importScripts('kernel.js');

self.onmessage = function (event) {
  var task = event.data;
  try {
    self.postMessage({ ok: true, result: self.PiswarmKernel.compute(task.id, task.a, task.b, task.kernel) });
  } catch (e) {
    self.postMessage({ ok: false, id: task.id, message: String(e && e.message || e) });
  }
};
