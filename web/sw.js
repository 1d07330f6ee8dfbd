// The lafs web app's service worker: streams files that the page verifies and decrypts.
//
// The page (files.js) gives each opened file a random token and asks this worker to serve it at
// the virtual URL `lafs-stream/<token>/<file name>` (under this worker's scope). A request for
// such a URL — a "Save" link, or the `src` of an <audio>/<video>/<img> — is answered here with a
// streaming Response whose body is pulled, piece by piece, from the page over a MessageChannel:
// the page fetches the ciphertext of just that range from the gateway, checks every segment
// against the cap and decrypts it. Nothing is buffered beyond a piece or two, so memory does not
// grow with the file, and `Range` requests (seeking in media) are answered from any offset.
//
// This worker never sees the cap or the key and makes no network request of its own; the token in
// the URL is a random name for one page's open file, useless outside that page. Every other
// request passes through untouched.
'use strict';

const STREAM_PATH = new URL('lafs-stream/', self.registration.scope).pathname;
/** How long the page may take to answer "open" (it may fetch the file's UEB first). */
const OPEN_TIMEOUT_MS = 30_000;

/** token → id of the window client that registered it (lost if the worker is restarted). */
const owners = new Map();

self.addEventListener('install', (event) => {
  // Only stream URLs need this worker: the rest goes straight to the network (static routing,
  // where supported; elsewhere the fetch handler below simply does not answer those requests).
  if (event.addRoutes && self.URLPattern) {
    try {
      const streams = new URLPattern({ pathname: `${STREAM_PATH}*` });
      event.waitUntil(
        event.addRoutes([{ condition: { not: { urlPattern: streams } }, source: 'network' }]).catch(() => {}),
      );
    } catch {
      // An older static-routing API: the fetch handler alone decides.
    }
  }
  self.skipWaiting();
});

self.addEventListener('activate', (event) => {
  // Control the open pages at once, so that media elements' requests come here.
  event.waitUntil(self.clients.claim());
});

self.addEventListener('message', (event) => {
  const m = event.data;
  if (!m || typeof m !== 'object') return;
  if (m.type === 'lafs-register' && typeof m.token === 'string' && event.source?.id) {
    owners.set(m.token, event.source.id);
  } else if (m.type === 'lafs-unregister' && typeof m.token === 'string') {
    owners.delete(m.token);
  } else if (m.type === 'lafs-claim') {
    // A page loaded without this worker (e.g. a forced reload) asks to be controlled.
    event.waitUntil(self.clients.claim());
  } else if (m.type === 'lafs-ping') {
    // Sent by a page while it streams: a message event keeps this worker alive.
    event.source?.postMessage({ type: 'lafs-pong' });
  }
});

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (url.origin !== self.location.origin || !url.pathname.startsWith(STREAM_PATH)) return;
  event.respondWith(
    serve(event).catch(
      (e) => textResponse(500, `lafs: the file could not be streamed (${e?.message ?? e}).`),
    ),
  );
});

function textResponse(status, text, headers = {}) {
  return new Response(`${text}\n`, {
    status,
    headers: { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store', ...headers },
  });
}

/** Waits for the next message on `port` (or rejects after `ms`). */
function nextMessage(port, ms) {
  return new Promise((resolve, reject) => {
    const timer = ms ? setTimeout(() => reject(new Error('the page did not answer')), ms) : null;
    port.onmessage = (e) => {
      if (timer) clearTimeout(timer);
      port.onmessage = null;
      resolve(e.data);
    };
  });
}

/**
 * Asks the page that owns `token` to open it: resolves to `{ port, info }` where `info` is
 * `{ size, mime, name }`, or null if no open page has this token.
 */
async function openAt(token, hintClientId) {
  const ids = [];
  const known = owners.get(token);
  if (known) ids.push(known);
  if (hintClientId && hintClientId !== known) ids.push(hintClientId);
  const candidates = [];
  for (const id of ids) {
    const c = await self.clients.get(id);
    if (c) candidates.push(c);
  }
  // After a restart of this worker the table is empty: ask every window of this origin (only
  // the one that made the token answers).
  for (const c of await self.clients.matchAll({ type: 'window', includeUncontrolled: true })) {
    if (!candidates.some((x) => x.id === c.id)) candidates.push(c);
  }
  for (const client of candidates) {
    const channel = new MessageChannel();
    client.postMessage({ type: 'lafs-open', token }, [channel.port2]);
    let answer;
    try {
      answer = await nextMessage(channel.port1, OPEN_TIMEOUT_MS);
    } catch {
      channel.port1.close();
      continue;
    }
    if (answer?.type === 'info') {
      owners.set(token, client.id);
      return { port: channel.port1, info: answer };
    }
    channel.port1.close();
    if (answer?.type === 'error') throw new Error(answer.message);
  }
  return null;
}

/**
 * Allocates short-lived objects, about a tenth of `bytes`. Each piece of a stream arrives here as
 * a new ArrayBuffer that is garbage once the browser has taken it; this worker allocates almost
 * nothing else, so V8 would only collect those buffers after ~100 MiB of them had piled up (its
 * external-memory limit). Young-generation collections, which this triggers every few pieces,
 * free young ArrayBuffers at once: measured, the worker's memory stays within a few MiB instead
 * of growing by 100–200 MiB during a large save, for well under 1 ms per MiB.
 */
function nudgeCollector(bytes) {
  let junk = [];
  for (let i = 0; i < Math.min(100_000, bytes >> 6); i++) junk.push({ i });
  junk = null;
  return junk;
}

/** Parses a `Range` header against `size`: `{ start, end }` (end exclusive), 'bad', or null. */
function parseRange(header, size) {
  if (!header) return null;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m || (m[1] === '' && m[2] === '')) return null; // not one byte range: send the whole file
  if (m[1] === '') {
    const n = Number(m[2]); // the last n bytes
    if (n === 0) return 'bad';
    return { start: Math.max(0, size - n), end: size };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size : Math.min(size, Number(m[2]) + 1);
  if (start >= size || end <= start) return 'bad';
  return { start, end };
}

/** `attachment; filename*=UTF-8''…` (RFC 6266/8187) with an ASCII fallback. */
function disposition(kind, name) {
  const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `${kind}; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}

async function serve(event) {
  const req = event.request;
  const url = new URL(req.url);
  const token = url.pathname.slice(STREAM_PATH.length).split('/')[0];
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    return textResponse(405, 'lafs: only GET and HEAD.', { Allow: 'GET, HEAD' });
  }
  const opened = /^[0-9a-f]{32}$/.test(token) ? await openAt(token, event.clientId) : null;
  if (!opened) {
    return textResponse(
      404,
      'lafs: this file is no longer open. Open its share link again in the lafs page, then save it from there.',
    );
  }
  const { port, info } = opened;
  const size = info.size;
  const range = parseRange(req.headers.get('Range'), size);
  const headers = {
    'Content-Type': info.mime || 'application/octet-stream',
    'Accept-Ranges': 'bytes',
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    'Content-Disposition': disposition(url.searchParams.has('download') ? 'attachment' : 'inline', info.name),
  };
  // Whatever the type, never run the file as a page of this origin (Chromium shows no PDF in a
  // sandboxed document; the page only ever names harmless types, and nosniff holds them).
  if (headers['Content-Type'] !== 'application/pdf') headers['Content-Security-Policy'] = 'sandbox';
  if (range === 'bad') {
    port.postMessage({ type: 'close' });
    port.close();
    return textResponse(416, 'lafs: range not satisfiable.', { 'Content-Range': `bytes */${size}` });
  }
  const start = range ? range.start : 0;
  const end = range ? range.end : size;
  headers['Content-Length'] = String(end - start);
  if (range) headers['Content-Range'] = `bytes ${start}-${end - 1}/${size}`;
  const status = range ? 206 : 200;
  if (req.method === 'HEAD') {
    port.postMessage({ type: 'close' });
    port.close();
    return new Response(null, { status, headers });
  }
  port.postMessage({ type: 'range', start, end, download: url.searchParams.has('download') });
  if (end === start) {
    port.close(); // an empty file: nothing to pull (the page counts it as delivered)
    return new Response(null, { status, headers });
  }
  let finished = false;
  const body = new ReadableStream(
    {
      // Pull-based: the page produces the next piece only when this stream asks for it, i.e.
      // when fewer than two pieces wait for the browser to take them (backpressure all the way
      // to the gateway).
      async pull(controller) {
        const answer = nextMessage(port, 0);
        port.postMessage({ type: 'pull' });
        const m = await answer;
        if (m?.type === 'chunk') {
          controller.enqueue(new Uint8Array(m.data));
          nudgeCollector(m.data.byteLength);
        } else if (m?.type === 'end') {
          finished = true;
          port.close();
          controller.close();
        } else {
          // An integrity failure (or a fetch error): abort the response, so that the download
          // fails or the media element errors out instead of getting wrong or missing bytes.
          finished = true;
          port.close();
          controller.error(new Error(m?.message ?? 'the page stopped the stream'));
        }
      },
      cancel() {
        if (finished) return;
        finished = true;
        port.postMessage({ type: 'cancel' });
        port.close();
      },
    },
    { highWaterMark: 2 },
  );
  return new Response(body, { status, headers });
}
