// A Chromium driven over a bare DevTools pipe, for memory measurements. Playwright enables the
// DevTools Network domain on every page and worker, and Chromium then keeps copies of response
// bodies for the inspector (up to hundreds of MB in the renderer), which would be counted as the
// page's memory. Here only the domains needed are used: Target, Runtime, Browser, SystemInfo.
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';

/** Starts headless Chromium: `{ send(method, params, sessionId), on(event, fn), close() }`. */
export async function launchRaw() {
  const exe = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
  const child = spawn(
    exe,
    [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
      '--no-default-browser-check', '--remote-debugging-pipe', 'about:blank',
    ],
    { stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'] },
  );
  const [, , , toChrome, fromChrome] = child.stdio;
  let nextId = 1;
  const pending = new Map();
  const listeners = [];
  let buf = Buffer.alloc(0);
  fromChrome.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    for (let end = buf.indexOf(0); end >= 0; end = buf.indexOf(0)) {
      const msg = JSON.parse(buf.subarray(0, end).toString('utf8'));
      buf = buf.subarray(end + 1);
      if (msg.id && pending.has(msg.id)) {
        const { resolve, reject } = pending.get(msg.id);
        pending.delete(msg.id);
        if (msg.error) reject(new Error(`${msg.error.message} (${msg.error.code})`));
        else resolve(msg.result);
      } else if (msg.method) {
        for (const l of listeners) l(msg);
      }
    }
  });
  const exited = new Promise((r) => child.once('exit', r));
  return {
    pid: child.pid,
    send(method, params = {}, sessionId = undefined) {
      const id = nextId++;
      toChrome.write(JSON.stringify({ id, method, params, sessionId }) + '\0');
      return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
    },
    /** Calls `fn(message)` for every event. */
    on(fn) {
      listeners.push(fn);
    },
    /** Resolves with the first event for which `pred(message)` holds. */
    waitFor(pred, ms = 60_000) {
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('timed out waiting for a DevTools event')), ms);
        listeners.push((m) => {
          if (pred(m)) {
            clearTimeout(t);
            resolve(m);
          }
        });
      });
    },
    /** Resident memory (MiB) of this browser's processes by type, e.g. { renderer, browser }. */
    async rss() {
      const { processInfo } = await this.send('SystemInfo.getProcessInfo');
      const out = {};
      for (const p of processInfo) {
        try {
          const status = await readFile(`/proc/${p.id}/status`, 'utf8');
          out[p.type] = (out[p.type] ?? 0) + Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
        } catch {
          // the process exited
        }
      }
      return out;
    },
    async close() {
      try {
        await Promise.race([this.send('Browser.close'), new Promise((r) => setTimeout(r, 5000))]);
      } catch {
        // already closing
      }
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Opens `url` in a new tab: `{ sessionId, evaluate(expression) }`. */
export async function openTab(chrome, url) {
  const { targetId } = await chrome.send('Target.createTarget', { url });
  const { sessionId } = await chrome.send('Target.attachToTarget', { targetId, flatten: true });
  return {
    sessionId,
    async evaluate(expression) {
      const r = await chrome.send(
        'Runtime.evaluate',
        { expression, awaitPromise: true, returnByValue: true },
        sessionId,
      );
      if (r.exceptionDetails) throw new Error(r.exceptionDetails.exception?.description ?? r.exceptionDetails.text);
      return r.result.value;
    },
  };
}
