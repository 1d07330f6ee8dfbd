// Opening files in the tab (uploads: upload.js). The wasm module (crates/wasm, `FileReader`)
// holds the key and decides what is verified; this script moves bytes between the gateway's
// verifycap endpoints (docs/spec/gateway.md, `/ciphertext`) or the storage servers (direct.js) and
// the page, and hashes and decrypts with WebCrypto (webcrypto.js, crypto-worker.js) where the
// browser has it.
//
// Files are delivered in one of two ways:
// * small files (up to INLINE_MAX) are fetched and verified whole when the link is opened, so
//   nothing of a damaged file is ever shown;
// * everything else is streamed through the service worker (sw.js): a "Save" link or a media
//   element's `src` is a virtual URL `lafs-stream/<token>/<name>`, and for each request the worker
//   pulls verified plaintext of the requested byte range from this page, a few MiB at a time
//   (serveStream), so memory stays flat whatever the file size and media can seek.
//
// What leaves the tab: the verifycap (public), ciphertext, and the selection index (public).
// Never the readcap or the key: the cap stays in the URL fragment, which browsers do not send,
// and the service worker only ever sees random tokens and plaintext.

import { openDirect } from './direct.js';
import { apiUrl, currentGrid, fragmentParam, serverListText } from './gateway.js';
import { blockDigests } from './digests.js';
import { aesCtr, importAesKey, useWebCrypto } from './webcrypto.js';
import { formatSize } from './format.js';
import { setupUpload } from './upload.js';

const MiB = 1024 * 1024;
/** Bytes of ciphertext fetched (and verified) per request. */
const BATCH_BYTES = 4 * MiB;
/** Ciphertext requests kept in flight while a file is read (pipelining). */
const FETCH_DEPTH = 4;
/** Segments per proof request to the gateway (its proof and leaf hashes: ~70 bytes a segment). */
const PROOF_WINDOW = 1024;
/**
 * Plaintext bytes per batch read from the storage servers (one range request per data share);
 * `?direct-batch-mib=N` to try others. Larger batches mean fewer requests, each costing the
 * browser process and the network service a few ms of CPU whatever its size (4 MiB batches
 * spent about 2 ms per MiB more there than 16 MiB ones), and more memory in flight.
 */
/** A positive number from the page's query parameter `name`, else `fallback`. */
function positiveParam(name, fallback) {
  const v = Number(new URLSearchParams(location.search).get(name));
  return Number.isFinite(v) && v > 0 ? v : fallback;
}
const DIRECT_BATCH_BYTES = positiveParam('direct-batch-mib', 8) * MiB;
/**
 * Batches read from the storage servers at once (`?direct-depth=N` to try others): at least 3,
 * so that the two crypto workers have a batch to work on while the next one is on its way.
 */
const DIRECT_DEPTH = Math.ceil(positiveParam('direct-depth',
  Math.max(3, Math.round(FETCH_DEPTH * BATCH_BYTES / DIRECT_BATCH_BYTES))));
/** Text files larger than this are offered as a download only. */
const MAX_TEXT_SHOWN = 2 * MiB;
/** Files up to this size are read and verified whole when opened; larger ones are streamed. */
const INLINE_MAX = 16 * MiB;
/**
 * Without a service worker, files up to this size are read into memory without asking
 * (`?memory-max-mib=N` sets another limit, e.g. to try the question on a small file).
 */
const MEMORY_MAX = Number(new URLSearchParams(location.search).get('memory-max-mib') ?? 256) * MiB;

const $ = (id) => document.getElementById(id);

let current = 0; // increments per opened link: a newer link cancels an older download
let linkName = null; // the file name the link carries (`&name=`), if any
let shownUrl = null;
/** The file of the link shown now (an OpenFile), if it is a readcap's. */
let currentFile = null;
/** Timings of the last download/upload in milliseconds (read by the benchmark test). */
window.lafsTimings = {};
/** Every range the service worker asked for: { start, end, download, state, bytes, ms } (tests). */
window.lafsStreams = [];

function wasm() {
  return window.wasmBindings;
}

// Hashing and decrypting in dedicated workers (crypto-worker.js): WebCrypto runs one operation
// at a time per JS context, so two workers work on two batches at once. `?workers=0` keeps it
// all in the page.
const WORKERS = 2;
let cryptoWorkers = null;
let workerCalls = 0;
let nextWorker = 0;

/** The crypto workers, or an empty list if they cannot be started here. */
function workers() {
  if (cryptoWorkers) return cryptoWorkers;
  cryptoWorkers = [];
  const n = Number(new URLSearchParams(location.search).get('workers') ?? WORKERS);
  try {
    for (let i = 0; i < n && typeof Worker === 'function'; i++) {
      const w = new Worker(new URL('crypto-worker.js', location.href), { type: 'module' });
      w.pending = new Map();
      w.onmessage = (e) => {
        const call = w.pending.get(e.data.id);
        w.pending.delete(e.data.id);
        if (e.data.error) call?.reject(new Error(`hashing or decrypting failed: ${e.data.error}`));
        else call?.resolve(e.data);
      };
      w.onerror = (e) => {
        for (const call of w.pending.values()) call.reject(new Error(`the crypto worker failed: ${e.message}`));
        w.pending.clear();
      };
      cryptoWorkers.push(w);
    }
  } catch {
    cryptoWorkers = [];
  }
  return cryptoWorkers;
}

/** Runs `msg` in worker `w`, handing over the buffers in `transfer`: resolves to its answer. */
function callWorkerWith(w, msg, transfer) {
  const id = ++workerCalls;
  return new Promise((resolve, reject) => {
    w.pending.set(id, { resolve, reject });
    w.postMessage({ id, ...msg }, transfer);
  });
}

/** Runs `msg` in worker `w`, handing over `bytes`: resolves to its answer. */
function callWorker(w, msg, bytes) {
  const id = ++workerCalls;
  return new Promise((resolve, reject) => {
    w.pending.set(id, { resolve, reject });
    w.postMessage({ id, ...msg, bytes }, [bytes.buffer]);
  });
}

function setProgress(done, total) {
  const bar = $('file-progress');
  bar.hidden = false;
  bar.max = Math.max(total, 1);
  bar.value = total === 0 ? 1 : done;
  $('file-status').textContent =
    total === 0 ? '' : `${formatSize(done)} of ${formatSize(total)} verified and decrypted`;
}

function resetFile() {
  if (shownUrl) URL.revokeObjectURL(shownUrl);
  shownUrl = null;
  currentFile = null;
  $('file').hidden = true;
  $('file-error').hidden = true;
  $('file-view').replaceChildren();
  $('file-download').hidden = true;
  $('file-progress').hidden = true;
  $('file-status').textContent = '';
  const root = document.documentElement;
  for (const a of ['data-file-state', 'data-delivery', 'data-save-state']) root.removeAttribute(a);
}

function showFileError(kind, message) {
  $('file-progress').hidden = true;
  // Whatever was shown of the file goes: it may be damaged.
  $('file-view').replaceChildren();
  $('file-download').hidden = true;
  if (shownUrl) URL.revokeObjectURL(shownUrl);
  shownUrl = null;
  const box = $('file-error');
  box.dataset.kind = kind;
  $('file-error-title').textContent =
    kind === 'integrity'
      ? 'This file failed its integrity check'
      : 'The file could not be fetched';
  $('file-error-message').textContent =
    kind === 'integrity'
      ? `${message}. It is not shown and its delivery was stopped (only bytes that passed the check were ever delivered): the data is damaged or was tampered with, or the link names another file.`
      : message;
  box.hidden = false;
  $('file-status').textContent = '';
  document.documentElement.setAttribute('data-file-state', 'error');
}

class FetchError extends Error {}

async function fetchOk(url, init) {
  let resp;
  try {
    resp = await fetch(url, { cache: 'no-store', ...init });
  } catch (e) {
    throw new FetchError(`the gateway could not be reached (${e.message})`);
  }
  if (!resp.ok) {
    const text = (await resp.text().catch(() => '')).trim().slice(0, 300);
    throw new FetchError(`the gateway answered ${resp.status}${text ? `: ${text}` : ''}`);
  }
  return resp;
}

/**
 * Reads a response body in exact pieces, each into a buffer from a pool (a BYOB reader fills it
 * in place, so a long read allocates no new buffers) where the browser allows it.
 */
class BodyReader {
  constructor(resp) {
    this.byob = null;
    try {
      this.byob = resp.body?.getReader({ mode: 'byob' }) ?? null;
    } catch {
      // no byte stream here
    }
    this.plain = this.byob ? null : resp.body.getReader();
    this.left = new Uint8Array(0);
    this.total = 0;
  }

  short() {
    return new FetchError(`the gateway's answer ended after ${this.total} bytes, before the range asked for`);
  }

  /** The next `len` bytes, in `buf` (a Uint8Array) if it is large enough. */
  async readExactly(len, buf) {
    let ab = buf && buf.buffer.byteLength >= len ? buf.buffer : new ArrayBuffer(len);
    let off = 0;
    if (this.byob) {
      while (off < len) {
        const { value, done } = await this.byob.read(new Uint8Array(ab, off, len - off));
        if (done) throw this.short();
        ab = value.buffer;
        off += value.length;
        this.total += value.length;
      }
    } else {
      const out = new Uint8Array(ab, 0, len);
      while (off < len) {
        if (this.left.length === 0) {
          const { value, done } = await this.plain.read();
          if (done) throw this.short();
          this.left = value;
        }
        const n = Math.min(len - off, this.left.length);
        out.set(this.left.subarray(0, n), off);
        this.left = this.left.subarray(n);
        off += n;
        this.total += n;
      }
    }
    return new Uint8Array(ab, 0, len);
  }

  /** Fails if anything follows what was read. */
  async expectEnd() {
    const { done } = this.byob
      ? await this.byob.read(new Uint8Array(1))
      : this.left.length > 0 ? { done: false } : await this.plain.read();
    if (!done) {
      this.cancel();
      throw new FetchError(`the gateway sent more than the ${this.total} bytes asked for`);
    }
  }

  cancel() {
    (this.byob ?? this.plain).cancel().catch(() => {});
  }
}

/** Guesses a MIME type from the first bytes (inline display only for harmless kinds). */
export function sniff(head) {
  const at = (i, s) => [...s].every((c, j) => head[i + j] === c.charCodeAt(0));
  if (head.length >= 8 && head[0] === 0x89 && at(1, 'PNG')) return 'image/png';
  if (head.length >= 3 && head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return 'image/jpeg';
  if (at(0, 'GIF8')) return 'image/gif';
  if (at(0, 'RIFF') && at(8, 'WEBP')) return 'image/webp';
  if (at(0, 'RIFF') && at(8, 'WAVE')) return 'audio/wav';
  if (at(0, '%PDF-')) return 'application/pdf';
  if (at(4, 'ftyp')) return at(8, 'M4A') ? 'audio/mp4' : 'video/mp4';
  if (head.length >= 4 && head[0] === 0x1a && head[1] === 0x45 && head[2] === 0xdf && head[3] === 0xa3) return 'video/webm';
  if (at(0, 'OggS')) return 'audio/ogg';
  if (at(0, 'fLaC')) return 'audio/flac';
  if (at(0, 'ID3') || (head.length >= 2 && head[0] === 0xff && (head[1] & 0xe0) === 0xe0)) return 'audio/mpeg';
  return null;
}

function isText(bytes) {
  if (bytes.includes(0)) return false;
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    return true;
  } catch {
    return false;
  }
}

const EXT = {
  'image/png': 'png', 'image/jpeg': 'jpg', 'image/gif': 'gif', 'image/webp': 'webp',
  'audio/wav': 'wav', 'application/pdf': 'pdf', 'video/mp4': 'mp4', 'audio/mp4': 'm4a',
  'video/webm': 'webm', 'audio/ogg': 'ogg', 'audio/flac': 'flac', 'audio/mpeg': 'mp3',
  'text/plain': 'txt',
};

const nameFor = (type) => `lafs-file${type && EXT[type] ? '.' + EXT[type] : ''}`;

/**
 * Shows a file: inline for text, images, PDF, audio and video, and a "Save" link. `parts` is
 * the verified plaintext when it was read whole (small files, literal caps), `head` its first
 * bytes otherwise. With `file` and a service worker, media, images, PDF and the Save link are
 * streamed from `file`; else they come from a Blob of `parts`.
 */
function showFile({ parts = null, head = null, size, file = null, sw = null }) {
  head ??= (parts.find((p) => p.length > 0) ?? new Uint8Array(0)).subarray(0, 64);
  let type = sniff(head);
  let text = null;
  if (!type && parts && size > 0 && size <= MAX_TEXT_SHOWN) {
    const all = new Uint8Array(size);
    let o = 0;
    for (const p of parts) { all.set(p, o); o += p.length; }
    if (isText(all)) {
      type = 'text/plain';
      text = new TextDecoder().decode(all);
    }
  }
  const name = linkName ?? nameFor(type);
  const streamed = Boolean(file && sw);
  if (file) {
    file.type = type ?? 'application/octet-stream';
    file.name = name;
    file.urlName = nameFor(type);
  }
  const blobUrl = () => {
    shownUrl ??= URL.createObjectURL(new Blob(parts, { type: type ?? 'application/octet-stream' }));
    return shownUrl;
  };
  const src = () => (streamed ? file.url(false) : blobUrl());
  const view = $('file-view');
  let el = null;
  if (type === 'text/plain') {
    el = document.createElement('pre');
    el.textContent = text;
  } else if (type?.startsWith('image/')) {
    el = document.createElement('img');
    el.alt = 'the file';
    el.src = src();
  } else if (type === 'application/pdf') {
    el = document.createElement('iframe');
    el.title = 'the file (PDF)';
    el.src = src();
  } else if (type?.startsWith('audio/') || type?.startsWith('video/')) {
    el = document.createElement(type.startsWith('audio/') ? 'audio' : 'video');
    el.controls = true;
    el.preload = 'metadata';
    el.src = src();
  }
  if (el) {
    el.id = 'file-inline';
    view.replaceChildren(el);
  }
  const a = $('file-download');
  if (streamed) {
    // A navigation (not `download`, which Chromium does not send through service workers) in a
    // hidden frame: the worker's attachment becomes a download, and the page stays.
    a.href = file.url(true);
    a.removeAttribute('download');
    a.target = 'file-save-frame';
  } else {
    a.href = blobUrl();
    a.download = name;
    a.removeAttribute('target');
  }
  a.textContent = `Save ${linkName ?? 'the file'} (${formatSize(size)}${type ? ', ' + type : ''})`;
  a.hidden = false;
  $('file-progress').hidden = true;
  $('file-status').textContent = parts
    ? `${formatSize(size)}, verified against the cap and decrypted in this tab.`
    : `${formatSize(size)}. It is streamed: each piece is verified against the cap and decrypted in this tab as it is played or saved, and never held whole in memory.`;
  $('file').dataset.type = type ?? '';
  const root = document.documentElement;
  root.setAttribute('data-delivery', streamed ? 'stream' : 'memory');
  root.setAttribute('data-file-state', 'shown');
}

/** Without a service worker, a large file is loaded into memory only when asked. */
function showTooLarge(file, token, why) {
  $('file-progress').hidden = true;
  $('file-status').textContent =
    `This file is ${formatSize(file.size)}. This browser cannot stream it to disk here (${why}), ` +
    'so it would have to be held whole in this tab\'s memory. `lafs get` can save it instead, or:';
  const button = document.createElement('button');
  button.type = 'button';
  button.id = 'file-load-anyway';
  button.textContent = `Load ${formatSize(file.size)} into memory anyway`;
  button.addEventListener('click', () => {
    $('file-view').replaceChildren();
    readWhole(file, token, null).catch((e) => fileFailed(e, token));
  });
  $('file-view').replaceChildren(button);
  document.documentElement.setAttribute('data-file-state', 'too-large');
}

function randomToken() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
}

/** Open files by token: what the service worker may ask this page to stream. */
const openFiles = new Map();

/**
 * One readcap's file, open in this page: reads verified plaintext of any byte range, fetching
 * only the ciphertext of the segments it needs (with their proofs) from the gateway. The wasm
 * `FileReader` checks every segment against the cap before it is decrypted; after one failed
 * check the file refuses every further read.
 */
class OpenFile {
  constructor(reader, key, base, direct = null) {
    this.r = reader;
    this.key = key;
    this.base = base;
    /** The data shares on the storage servers (a DirectSource), or null: the gateway. */
    this.direct = direct;
    this.outPool = [];
    this.size = reader.fileSize;
    this.segSize = reader.segmentSize;
    this.nseg = reader.numSegments;
    this.k = reader.k;
    this.prefix = wasm().blockHashPrefix();
    this.token = randomToken();
    this.type = 'application/octet-stream';
    this.name = 'lafs-file';
    this.urlName = 'lafs-file';
    this.failed = null;
    this.pool = [];
    /**
     * Time the reader waited for a verified batch; spent fetching (storage servers) or waiting
     * for the bytes (gateway), then hashing, verifying and decrypting batches (overlapping);
     * where the bytes came from.
     */
    this.stats = { waitMs: 0, cryptoMs: 0, via: direct ? 'storage-servers' : 'gateway' };
    this.scratch = { buf: new Uint8Array(this.prefix.length + Math.ceil(this.segSize / this.k)) };
  }

  /** The service-worker URL of this file (`?download`: saved as an attachment). */
  url(download) {
    // A generic name in the URL (the link's own file name, if any, reaches the worker in a
    // message and names the download from there): nothing of the file's name is in a URL.
    const path = `lafs-stream/${this.token}/${encodeURIComponent(this.urlName)}`;
    return new URL(path + (download ? '?download' : ''), swScope()).href;
  }

  /**
   * A buffer for one batch of ciphertext. Buffers go back to a small pool once their bytes are
   * copied out (WebCrypto and wasm copy their input when called), so a long read allocates no
   * new ciphertext buffers: garbage left to the collector would otherwise grow the tab's memory
   * by tens of MiB during a large save.
   */
  takeBuffer() {
    const size = Math.max(1, Math.floor(BATCH_BYTES / this.segSize)) * this.segSize;
    return this.pool.pop() ?? new Uint8Array(size);
  }

  releaseBuffer(bytes) {
    if (this.pool.length < FETCH_DEPTH + 1 && bytes.buffer.byteLength > 0) this.pool.push(new Uint8Array(bytes.buffer));
  }

  /** The proof of segments [a, b) with their leaf hashes (JSON text). */
  fetchProof(a, b, signal) {
    return fetchOk(`${this.base}?t=proof&segments=${a}-${b - 1}`, { signal }).then((x) => x.text());
  }

  /** Verifies a fetched batch in wasm and only then decrypts it: its plaintext, in pieces. */
  async open({ a, proof, bytes }) {
    let pooled = true;
    try {
      if (this.failed) throw this.failed;
      // `proof`: JSON text, or a window's { text, added } shared by its batches (added once).
      if (typeof proof === 'string') this.r.addProof(proof);
      else if (!proof.added) {
        this.r.addProof(proof.text);
        proof.added = true;
      }
      const offset = a * this.segSize;
      const pool = this.key && offset % 16 === 0 ? workers() : [];
      if (pool.length > 0) {
        // The same steps in a worker: hashes there, checked here, then decrypted there.
        const w = pool[nextWorker++ % pool.length];
        const hashed = await callWorker(w, { op: 'digest', prefix: this.prefix, segSize: this.segSize, k: this.k }, bytes);
        pooled = false;
        const start = this.r.verifyDigests(a, hashed.digests, hashed.bytes.length);
        const done = await callWorker(w, { op: 'decrypt', key: this.key, offset: start }, hashed.bytes);
        this.releaseBuffer(done.bytes);
        return [new Uint8Array(done.plain)];
      }
      if (this.key && offset % 16 === 0) {
        // SHA-256 and AES-CTR in WebCrypto; the hashes are checked against the tree in wasm,
        // and nothing is decrypted unless every segment of the batch proved.
        const digests = await blockDigests(this.prefix, bytes, this.segSize, this.k, this.scratch);
        const start = this.r.verifyDigests(a, digests, bytes.length);
        // One piece per batch: each piece costs a round trip to the service worker.
        const plain = aesCtr(this.key, start, bytes); // WebCrypto copies its input first
        this.releaseBuffer(bytes);
        pooled = false;
        return [await plain];
      }
      return [this.r.openSegments(a, bytes)];
    } catch (e) {
      if (e?.code === 'integrity' && !this.failed) {
        this.failed = e;
        // Shown at once, even if it was found reading ahead for a request since abandoned.
        if (this === currentFile) fileFailed(e, current);
      }
      throw e;
    } finally {
      if (pooled) this.releaseBuffer(bytes);
    }
  }

  /**
   * Verified plaintext of bytes [start, end), in pieces of up to BATCH_BYTES: from the storage
   * servers while that works, else (from where it stopped) from the gateway.
   */
  async *read(start, end) {
    let pos = start;
    if (this.direct) {
      try {
        for await (const p of this.readDirect(start, end)) {
          pos += p.length;
          yield p;
        }
        return;
      } catch (e) {
        // A self-contained link (`&grid=`) has no gateway to turn to.
        if (this.noGateway) throw e;
        // A share missing, a server gone, a block that fails its check: the gateway can use
        // the other shares. Nothing unverified was handed out.
        this.direct = null;
        this.stats.via = 'gateway';
        this.stats.fallback = String(e?.message ?? e);
        console.warn(`lafs: reading from the gateway instead of the storage servers: ${this.stats.fallback}`);
      }
    }
    yield* this.readGateway(pos, end);
  }

  /**
   * Awaits the batches of `inflight` (promises of `{ a, pieces }`: first segment, plaintext) in
   * order, calling `fill` after each to keep the pipeline full, and yields their plaintext that
   * lies in bytes [start, end).
   */
  async *drain(inflight, fill, start, end) {
    while (inflight.length > 0) {
      const t = performance.now();
      const { a, pieces } = await inflight.shift();
      this.stats.waitMs += performance.now() - t;
      fill();
      let off = a * this.segSize;
      for (const plain of pieces) {
        const from = Math.max(0, start - off);
        const to = Math.min(plain.length, end - off);
        off += plain.length;
        if (to <= from) continue;
        yield from === 0 && to === plain.length ? plain : plain.subarray(from, to);
      }
    }
  }

  /** Verified plaintext of bytes [start, end) from the data shares on the storage servers. */
  async *readDirect(start, end) {
    if (end <= start) return;
    const d = this.direct;
    const seg = this.segSize;
    const per = Math.max(1, Math.floor(DIRECT_BATCH_BYTES / seg));
    const first = Math.floor(start / seg);
    const last = Math.ceil(end / seg);
    // A batch being read when the read is abandoned (a seek) still completes in its worker.
    const inflight = [];
    let next = first;
    const fill = () => {
      while (inflight.length < DIRECT_DEPTH && next < last) {
        const a = next;
        const b = Math.min(last, a + per);
        next = b;
        const t = performance.now();
        const p = this.openDirect(d, a, b).then((pieces) => {
          this.stats.cryptoMs += performance.now() - t;
          return { a, pieces };
        });
        p.catch(() => {});
        inflight.push(p);
      }
    };
    fill();
    yield* this.drain(inflight, fill, start, end);
  }

  /**
   * Segments [a, b) from the blocks of the k data shares: a worker fetches them, hashes each block
   * as stored (padding included) and joins them into segments; wasm makes each segment's leaf from
   * its k block digests and checks it against the ciphertext tree (the same check as for the
   * gateway's ciphertext; checking the blocks against their shares' block trees would only tell
   * which share is wrong, and a failure turns to the gateway anyway); only then the worker
   * decrypts.
   */
  async openDirect(d, a, b) {
    const w = workers()[nextWorker++ % workers().length];
    const size = Math.max(1, Math.floor(DIRECT_BATCH_BYTES / this.segSize)) * this.segSize;
    let out = this.outPool.pop();
    if (!out || out.length < size) out = new Uint8Array(size);
    const r = await callWorkerWith(w, {
      op: 'blocks', a, b, k: d.k, segSize: this.segSize, fileSize: this.size, blockSize: d.blockSize,
      blockPrefix: d.blockPrefix, out, ...d.batchRequest(a, b),
    }, [out.buffer]);
    let start;
    try {
      start = d.reader.verifySegments(a, r.blockDigests, r.len);
    } catch (e) {
      this.outPool.push(r.out);
      throw e;
    }
    const ct = r.out.subarray(0, r.len);
    const done = await callWorker(w, { op: 'decrypt', key: this.key, offset: start }, ct);
    if (this.outPool.length < FETCH_DEPTH + 1) this.outPool.push(new Uint8Array(done.bytes.buffer));
    return [new Uint8Array(done.plain)];
  }

  /** Verified plaintext of bytes [start, end) from the gateway, in pieces of up to BATCH_BYTES. */
  async *readGateway(start, end) {
    if (end <= start) return;
    const seg = this.segSize;
    const per = Math.max(1, Math.floor(BATCH_BYTES / seg));
    const last = Math.ceil(end / seg);
    const batches = [];
    for (let a = Math.floor(start / seg); a < last; a += per) batches.push([a, Math.min(last, a + per)]);
    const abort = new AbortController();
    // One request for the ciphertext of the whole range: the gateway serves a long range much
    // faster than many short ones (docs/performance.md). It is read a batch at a time, so TCP
    // paces the gateway to the reader. One proof request per window of up to PROOF_WINDOW
    // segments brings the proof and the leaf hashes of all its segments (checked against the
    // root in wasm at once), so that every batch can be verified (and released) on its own.
    const ctStart = batches[0][0] * seg;
    const ctEnd = Math.min(last * seg, this.size);
    let body = fetchOk(this.base, { headers: { Range: `bytes=${ctStart}-${ctEnd - 1}` }, signal: abort.signal })
      .then((resp) => new BodyReader(resp));
    body.catch(() => {});
    const inflight = [];
    let next = 0;
    const first = batches[0][0];
    const windows = new Map(); // window number -> promise of { text, added }
    const proofFor = (a) => {
      const w = Math.floor((a - first) / PROOF_WINDOW);
      if (!windows.has(w)) {
        const ws = first + w * PROOF_WINDOW;
        const p = this.fetchProof(ws, Math.min(last, ws + PROOF_WINDOW), abort.signal)
          .then((text) => ({ text, added: false }));
        p.catch(() => {});
        windows.set(w, p);
      }
      return windows.get(w);
    };
    // Each batch is verified and decrypted as soon as it is read (WebCrypto works off the main
    // thread), while earlier batches are still being handed over: pieces come out in order.
    const fill = () => {
      while (inflight.length < FETCH_DEPTH && next < batches.length) {
        const [a, b] = batches[next++];
        const len = Math.min(b * seg, this.size) - a * seg;
        const proof = proofFor(a);
        const reader = body;
        const bytes = reader.then((rd) => rd.readExactly(len, this.takeBuffer()));
        body = bytes.then(() => reader); // the next batch is read after this one
        body.catch(() => {});
        const p = Promise.all([proof, bytes]).then(async ([proofText, data]) => {
          const t = performance.now();
          const pieces = await this.open({ a, proof: proofText, bytes: data });
          this.stats.cryptoMs += performance.now() - t;
          return { a, pieces };
        });
        p.catch(() => {}); // awaited in order below
        inflight.push(p);
      }
    };
    try {
      fill();
      yield* this.drain(inflight, fill, start, end);
      await (await body).expectEnd();
    } finally {
      abort.abort();
    }
  }
}

/** Reads a whole file into memory, then shows it. */
async function readWhole(file, token, sw) {
  const t0 = performance.now();
  const parts = [];
  let done = 0;
  setProgress(0, file.size);
  for await (const p of file.read(0, file.size)) {
    if (token !== current) return;
    parts.push(p);
    done += p.length;
    setProgress(done, file.size);
  }
  window.lafsTimings.download = { bytes: file.size, ms: performance.now() - t0, ...file.stats };
  showFile({ parts, size: file.size, file, sw });
}

/** Opens the file of a readcap: small files are read whole, larger ones streamed. */
async function download(capText, token) {
  const r = new (wasm().FileReader)(capText);
  const fast = await useWebCrypto();
  const key = fast ? await importAesKey(r.webCryptoKey()) : null;
  document.documentElement.dataset.crypto = fast ? 'webcrypto' : 'wasm';
  const base = apiUrl(`/ciphertext/${r.verifyCap}`);
  $('file-status').textContent = 'Fetching the file…';
  // The gateway's verifycap endpoint by default: on one machine it measured faster than reading
  // the data shares from the storage servers (one long body against k parallel ranges per batch;
  // docs/performance.md). `?direct=on` reads straight from the storage servers (direct.js),
  // falling back to the gateway from where reading stopped.
  let direct = null;
  // A self-contained link (`#<cap>&grid=<introducer>`) names its grid and no gateway: the data
  // shares are read from the storage servers the introducer lists, or not at all.
  const noGateway = Boolean(currentGrid());
  if (noGateway) {
    if (!key || workers().length === 0) {
      throw new FetchError('this link reads the file straight from the storage servers, which needs WebCrypto and workers in this browser');
    }
    direct = await openDirect(r.verifyCap, serverListText());
  } else if (key && workers().length > 0 && new URLSearchParams(location.search).get('direct') === 'on') {
    try {
      direct = await openDirect(r.verifyCap, serverListText());
    } catch (e) {
      window.lafsTimings.directUnavailable = String(e?.message ?? e);
    }
  }
  if (token !== current) return;
  const ueb = direct ? direct.reader.ueb : new Uint8Array(await (await fetchOk(`${base}?t=ueb`)).arrayBuffer());
  r.setUeb(ueb);
  const file = new OpenFile(r, key, base, direct);
  file.noGateway = noGateway;
  document.documentElement.dataset.source = direct ? 'storage-servers' : 'gateway';
  if (token !== current) return;
  currentFile = file;
  // The reader stays open for the page's life: a save in progress goes on after another link
  // is opened. It holds only the key and the hashes it verified.
  openFiles.set(file.token, file);
  const sw = await serviceWorker();
  if (token !== current) return;
  sw?.active?.postMessage({ type: 'lafs-register', token: file.token });
  if (file.size <= INLINE_MAX || (!sw && file.size <= MEMORY_MAX)) {
    await readWhole(file, token, sw);
  } else if (!sw) {
    showTooLarge(file, token, swUnavailable);
  } else {
    // Only the start is read now (to tell the type); the rest is streamed on demand.
    let head = new Uint8Array(0);
    for await (const p of file.read(0, Math.min(64, file.size))) head = p;
    if (token !== current) return;
    showFile({ head, size: file.size, file, sw });
  }
}

function fileFailed(e, token) {
  if (token !== current) return;
  if (e instanceof FetchError) showFileError('fetch', e.message);
  else if (e?.code === 'integrity') showFileError('integrity', capitalise(String(e.message)));
  else showFileError('fetch', String(e?.message ?? e));
}

/**
 * The `name` parameter of a share link's fragment (`#<cap>&name=<file name>`, added by uploads
 * and folder listings so that a saved file keeps its name), made safe as a file name; or null.
 */
function fileNameParam(fragment) {
  const v = fragmentParam(fragment, 'name') ?? '';
  const clean = v.replace(/[\x00-\x1f\x7f/\\]/g, '_').trim().slice(0, 200);
  return clean && clean !== '.' && clean !== '..' ? clean : null;
}

/** Opens the cap of the current URL fragment, if it names a file this page can read. */
async function openFragment() {
  const token = ++current;
  resetFile();
  const fragment = location.hash.replace(/^#/, '');
  linkName = fileNameParam(fragment);
  // Directory caps are shown by dirs.js (it ignores file caps and hides its view).
  window.lafsDirs?.route(fragment);
  if (!fragment) return;
  let link;
  try {
    link = wasm().parseShareLink(fragment);
  } catch {
    return; // the app shows why the cap is invalid
  }
  const info = link.cap;
  $('file').hidden = false;
  document.documentElement.setAttribute('data-file-state', 'loading');
  try {
    if (info.kind === 'literal') {
      // The file is inside the cap: no network at all.
      const data = info.literalData ?? new Uint8Array(0);
      showFile({ parts: [data], size: data.length });
    } else if (info.kind === 'readcap') {
      await download(info.text, token);
    } else {
      $('file').hidden = true;
      document.documentElement.removeAttribute('data-file-state');
    }
  } catch (e) {
    fileFailed(e, token);
  } finally {
    info.free();
  }
}

// ---- Streaming through the service worker (sw.js) ----

let swPromise = null;
let swRegistration = null;
/** Why there is no service worker (shown to the user). */
let swUnavailable = 'service workers are not available';

function swScope() {
  return swRegistration?.scope ?? new URL('./', location.href).href;
}

/**
 * The service-worker registration once it controls this page, or null if streaming is not
 * possible here (no service workers: a private window, a policy, an insecure origin; or the page
 * was opened with `?sw=off`).
 */
function serviceWorker() {
  swPromise ??= (async () => {
    if (new URLSearchParams(location.search).get('sw') === 'off') {
      swUnavailable = 'streaming is turned off by ?sw=off';
      return null;
    }
    if (!('serviceWorker' in navigator) || !window.isSecureContext) {
      swUnavailable = 'service workers are not available: a private window, a setting, or an address that is not https';
      return null;
    }
    const sw = navigator.serviceWorker;
    const within = (ms, p) => Promise.race([p, new Promise((r) => setTimeout(() => r(null), ms))]);
    try {
      await sw.register(new URL('sw.js', location.href), { scope: './' });
      const reg = await within(10_000, sw.ready);
      if (reg && !sw.controller) {
        // First visit, or a forced reload: ask the worker to take this page.
        const changed = new Promise((r) => sw.addEventListener('controllerchange', r, { once: true }));
        reg.active?.postMessage({ type: 'lafs-claim' });
        await within(5_000, changed);
      }
      if (!reg || !sw.controller) {
        swUnavailable = 'the service worker did not start';
        return null;
      }
      swRegistration = reg;
      return reg;
    } catch (e) {
      swUnavailable = `the service worker could not be registered (${e?.message ?? e})`;
      return null;
    }
  })();
  return swPromise;
}

/** Messages of a MessagePort as a queue: `next()` resolves to the next one. */
function portQueue(port) {
  const queue = [];
  const waiting = [];
  port.onmessage = (e) => (waiting.length ? waiting.shift()(e.data) : queue.push(e.data));
  return () => (queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => waiting.push(r)));
}

const activeStreams = new Set();
let keepAliveTimer = null;

/** While a stream runs, the page pings the worker: its message events keep it alive. */
function keepAlive() {
  if (keepAliveTimer) return;
  keepAliveTimer = setInterval(() => {
    if (activeStreams.size === 0) {
      clearInterval(keepAliveTimer);
      keepAliveTimer = null;
      return;
    }
    swRegistration?.active?.postMessage({ type: 'lafs-ping' });
  }, 10_000);
}

/**
 * Answers one request of the service worker for `file` over `port`: the file's size, type and
 * name, then, for the byte range it asks, one piece of verified plaintext per "pull" (so the
 * browser's consumption paces the fetching), and "end", or "error" if a check fails.
 */
async function serveStream(file, port) {
  const next = portQueue(port);
  if (file.failed) {
    port.postMessage({ type: 'error', message: 'the file failed its integrity check' });
    port.close();
    return;
  }
  port.postMessage({ type: 'info', size: file.size, mime: file.type, name: file.name });
  const req = await next();
  if (req?.type !== 'range') {
    port.close();
    return;
  }
  const log = {
    start: req.start, end: req.end, download: Boolean(req.download), state: 'streaming', bytes: 0, ms: 0,
  };
  window.lafsStreams.push(log);
  activeStreams.add(log);
  keepAlive();
  const t0 = performance.now();
  const shown = () => file === currentFile;
  const total = req.end - req.start;
  const progress = () => {
    if (!log.download || !shown()) return;
    const bar = $('file-progress');
    bar.hidden = false;
    bar.max = Math.max(total, 1);
    bar.value = log.bytes;
    $('file-status').textContent = log.bytes < total
      ? `Saving: ${formatSize(log.bytes)} of ${formatSize(total)} verified and decrypted…`
      : `Saved ${formatSize(total)}: every byte was verified against the cap and decrypted in this tab.`;
  };
  if (log.download && shown()) document.documentElement.setAttribute('data-save-state', 'saving');
  const pieces = file.read(req.start, req.end);
  // One piece is always being prepared ahead of the worker's next pull.
  let ahead = total > 0 ? pieces.next() : null;
  ahead?.catch(() => {});
  try {
    // An empty range: the worker has answered already and pulls nothing.
    if (total === 0) log.state = 'done';
    while (total > 0) {
      const m = await next();
      if (m?.type !== 'pull') {
        log.state = 'cancelled';
        break;
      }
      const { value, done } = await ahead;
      if (!done) {
        ahead = pieces.next();
        ahead.catch(() => {});
      }
      if (done) {
        port.postMessage({ type: 'end' });
        log.state = 'done';
        break;
      }
      // Hand the buffer over without a copy (a piece that is part of a larger one is copied).
      const buf = value.byteOffset === 0 && value.byteLength === value.buffer.byteLength
        ? value.buffer
        : value.slice().buffer;
      log.bytes += value.length;
      port.postMessage({ type: 'chunk', data: buf }, [buf]);
      progress();
    }
  } catch (e) {
    log.state = 'error';
    port.postMessage({ type: 'error', message: String(e?.message ?? e) });
    // An integrity failure is shown whatever asked for the bytes; a failed fetch only for a save.
    if (shown() && (e?.code === 'integrity' || log.download)) fileFailed(e, current);
  } finally {
    await pieces.return();
    log.ms = performance.now() - t0;
    activeStreams.delete(log);
    port.close();
    if (log.state === 'done') {
      window.lafsTimings.stream = { bytes: total, ms: log.ms, download: log.download, ...file.stats };
      progress();
      if (log.download && shown()) {
        $('file-progress').hidden = true;
        document.documentElement.setAttribute('data-save-state', 'saved');
      }
    } else if (log.download && shown() && log.state === 'error') {
      document.documentElement.setAttribute('data-save-state', 'error');
    }
  }
}

/** Listens for the service worker asking this page for an open file. */
function setupStreaming() {
  const sw = navigator.serviceWorker;
  if (!sw) return;
  sw.addEventListener('message', (e) => {
    const m = e.data;
    const port = e.ports?.[0];
    if (m?.type !== 'lafs-open' || !port) return;
    const file = openFiles.get(m.token);
    if (!file) {
      port.postMessage({ type: 'unknown' });
      port.close();
      return;
    }
    serveStream(file, port);
  });
  sw.startMessages();
  serviceWorker(); // register early, so it is ready when a file is opened
}

function capitalise(s) {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function start() {
  setupStreaming();
  setupUpload();
  window.addEventListener('hashchange', openFragment);
  openFragment();
}

if (window.wasmBindings) start();
else addEventListener('TrunkApplicationStarted', start, { once: true });
