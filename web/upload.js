// Uploading from the tab (the upload box, and files added to a folder by dirs.js). By default a
// file is encrypted here with a fresh random key (WebCrypto AES-CTR, else wasm) and its
// ciphertext sent in chunks to the gateway's upload session, which erasure-codes and stores it
// and never sees the key; with `?direct=on` the tab's own grid client (wasm `LafsGrid`) encodes
// the file and writes its shares straight to the storage servers.
//
// What leaves the tab: ciphertext and the selection index (public) to the gateway, or signed
// ciphertext shares to the storage servers. Never the readcap or the key.

import { apiUrl, encodesInTab, gridClient, shareLink } from './gateway.js';
import { aesCtr, importAesKey, useWebCrypto } from './webcrypto.js';
import { formatSize } from './format.js';

const MiB = 1024 * 1024;
const $ = (id) => document.getElementById(id);

function wasm() {
  return window.wasmBindings;
}

/** Ciphertext bytes per request of an upload session (a multiple of 16: AES-CTR blocks). */
const UPLOAD_CHUNK = 8 * MiB;
/** Times a chunk is tried again after the gateway could not be reached, pausing longer each time. */
const UPLOAD_RETRIES = 5;

const pause = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Allocates short-lived objects (as sw.js does): each chunk leaves two 8 MiB ArrayBuffers behind
 * (the file's bytes, the ciphertext), and V8 collects those only once ~100 MiB of them have piled
 * up, unless a young-generation collection, which this triggers, frees them at once.
 */
function nudgeCollector() {
  let junk = [];
  for (let i = 0; i < 100_000; i++) junk.push({ i });
  junk = null;
  return junk;
}

/** An Error for a refusal by the gateway (`r`, not ok), with the gateway's one-line reason. */
async function gatewayRefusal(r, what) {
  const reason = (await r.text().catch(() => '')).trim().slice(0, 300);
  if (r.status === 413) return new Error(`the gateway refused ${what} as too large: ${reason}`);
  return new Error(`the gateway answered ${r.status} to ${what}: ${reason}`);
}

/**
 * Sends `ct`, the ciphertext at file offset `start`, to the upload session at `url`. A chunk cut
 * by the network is resumed where the gateway says it stopped (`GET url`), a few times with
 * growing pauses; then the gateway counts as gone.
 */
async function sendChunk(url, start, ct) {
  let sent = 0;
  let failures = 0;
  for (;;) {
    let r;
    try {
      // A Blob body: an ArrayBuffer body would be copied into DevTools' network log when it
      // is open (Playwright: 3 MB/s instead of the gateway's rate); a Blob is not.
      r = await fetch(`${url}?offset=${start + sent}`, { method: 'PUT', body: new Blob([ct.subarray(sent)]) });
    } catch (e) {
      if (++failures > UPLOAD_RETRIES) {
        throw new Error(
          `the gateway stopped answering after ${formatSize(start + sent)} had been sent (${e?.message ?? e})`,
        );
      }
      await pause(250 * 2 ** (failures - 1));
      try {
        const s = await fetch(url, { cache: 'no-store' });
        if (!s.ok) throw await gatewayRefusal(s, 'a question about the upload');
        sent = (await s.json()).received - start;
      } catch (e2) {
        if (e2 instanceof TypeError) continue; // still unreachable: try again
        throw e2;
      }
      continue;
    }
    if (r.ok) return;
    // 409: the gateway has another count of the bytes (a cut chunk it took part of) or still
    // finishes the cut request; go on from its count.
    const at = Number(r.headers.get('upload-offset'));
    if (r.status === 409 && r.headers.has('upload-offset') && at >= start && at <= start + ct.length && ++failures <= UPLOAD_RETRIES) {
      sent = at - start;
      await pause(100 * failures);
      continue;
    }
    throw await gatewayRefusal(r, 'a chunk of the upload');
  }
}

/**
 * Encrypts `file` in the tab with a fresh key and uploads the ciphertext in chunks through an
 * upload session of the gateway (`POST /ciphertext/uploads`, docs/spec/gateway.md): the next
 * chunk is encrypted while one is sent, so the tab holds a few chunks whatever the file size. The
 * gateway erasure-codes the ciphertext and stores the shares; it never sees the key.
 * `onProgress(bytesSent)` follows the upload; `onStatus(text)` is told when the last shares are
 * being stored. Resolves to `{ readCap, encryptMs, uploadMs, totalMs, chunks, crypto }`; throws an
 * Error whose message says what went wrong (the session is deleted then).
 */
export async function uploadThroughGateway(file, { onProgress = () => {}, onStatus = () => {} } = {}) {
  const w = new (wasm().FileWriter)();
  let session = null;
  try {
    const t0 = performance.now();
    const fast = await useWebCrypto();
    const key = fast ? await importAesKey(w.webCryptoKey()) : null;
    let encryptMs = 0;
    const encryptChunk = async (off) => {
      const plain = new Uint8Array(await file.slice(off, off + UPLOAD_CHUNK).arrayBuffer());
      const t = performance.now();
      const ct = key ? await aesCtr(key, off, plain) : w.encrypt(off, plain);
      encryptMs += performance.now() - t;
      return ct;
    };
    let r;
    try {
      r = await fetch(apiUrl(`/ciphertext/uploads?selection_index=${w.selectionIndex}&size=${file.size}`), { method: 'POST' });
    } catch (e) {
      throw new Error(`the gateway could not be reached (${e?.message ?? e})`);
    }
    if (r.status !== 201) {
      const e = await gatewayRefusal(r, 'the start of the upload');
      // A gateway without upload sessions (404, 405, 501): the caller may encode in the tab.
      if ([404, 405, 501].includes(r.status)) e.code = 'no-upload-sessions';
      throw e;
    }
    session = apiUrl(`/ciphertext/uploads/${(await r.json()).id}`);
    let next = file.size > 0 ? encryptChunk(0) : null;
    for (let off = 0; off < file.size; off += UPLOAD_CHUNK) {
      const ct = await next;
      next = off + UPLOAD_CHUNK < file.size ? encryptChunk(off + UPLOAD_CHUNK) : null;
      await sendChunk(session, off, ct);
      onProgress(off + ct.length);
      nudgeCollector();
    }
    onStatus('finishing');
    let verifyCap;
    for (let attempt = 0; ; attempt++) {
      try {
        r = await fetch(`${session}/finish`, { method: 'POST' });
      } catch (e) {
        if (attempt >= UPLOAD_RETRIES) throw new Error(`the gateway stopped answering before the upload was finished (${e?.message ?? e})`);
        await pause(250 * 2 ** attempt);
        continue;
      }
      if (!r.ok) throw await gatewayRefusal(r, 'the end of the upload');
      verifyCap = (await r.text()).trim();
      break;
    }
    session = null;
    const readCap = w.readCap(verifyCap);
    const totalMs = performance.now() - t0;
    return {
      readCap, encryptMs, uploadMs: totalMs - encryptMs, totalMs,
      chunks: Math.ceil(file.size / UPLOAD_CHUNK), crypto: fast ? 'webcrypto' : 'wasm',
    };
  } catch (e) {
    // Let the gateway stop the uploader now rather than when the session expires.
    if (session) fetch(session, { method: 'DELETE' }).catch(() => {});
    throw e;
  } finally {
    w.free();
  }
}

/**
 * Encrypts, erasure-codes and hashes `file` in this tab (wasm, `LafsGrid.startFileUpload`) and
 * writes its shares straight to the storage servers the gateway lists: the gateway carries no
 * file data. Read in UPLOAD_CHUNK pieces, so memory does not grow with the file. Resolves to
 * `{ readCap, totalMs }`.
 */
export async function uploadToStorageServers(file, { onProgress = () => {} } = {}) {
  const t0 = performance.now();
  const grid = await gridClient();
  const up = grid.startFileUpload();
  try {
    for (let off = 0; off < file.size; off += UPLOAD_CHUNK) {
      const piece = new Uint8Array(await file.slice(off, off + UPLOAD_CHUNK).arrayBuffer());
      await up.write(piece);
      onProgress(off + piece.length);
    }
    const readCap = await up.finish();
    return { readCap, totalMs: performance.now() - t0 };
  } catch (e) {
    // A LafsError is not an Error: keep its message for the page.
    throw e instanceof Error ? e : new Error(String(e?.message ?? e));
  } finally {
    up.free();
    grid.free();
  }
}

/**
 * The upload box: uploads `file` and shows its share link. By default the ciphertext goes to the
 * gateway's upload session; with `?direct=on` the tab encodes the file itself and writes the
 * shares to the storage servers.
 */
async function upload(file) {
  const out = $('upload-result');
  const bar = $('upload-progress');
  const status = $('upload-status');
  out.hidden = true;
  document.documentElement.setAttribute('data-upload-state', 'busy');
  try {
    bar.hidden = false;
    bar.max = Math.max(file.size, 1);
    bar.value = 0;
    status.textContent = `Encrypting and uploading ${file.name} (${formatSize(file.size)})…`;
    let up;
    // No file data to the gateway (`?direct=on`, or no gateway at all): the tab encodes it.
    if (encodesInTab()) {
      up = await uploadToStorageServers(file, { onProgress: (n) => { bar.value = n; } });
      window.lafsTimings.upload = { bytes: file.size, totalMs: up.totalMs, via: 'storage-servers' };
    } else {
      up = await uploadThroughGateway(file, {
        onProgress: (n) => { bar.value = n; },
        onStatus: () => { status.textContent = `Storing the last shares of ${file.name}…`; },
      });
      document.documentElement.dataset.crypto = up.crypto;
      window.lafsTimings.upload = { bytes: file.size, encryptMs: up.encryptMs, uploadMs: up.uploadMs, totalMs: up.totalMs, chunks: up.chunks, via: 'gateway' };
    }
    const link = shareLink(`${up.readCap}&name=${encodeURIComponent(file.name)}`);
    $('upload-link').value = link;
    $('upload-open').href = link;
    out.hidden = false;
    bar.hidden = true;
    status.textContent = `Uploaded ${file.name} (${formatSize(file.size)}). Anyone with this link can read it.`;
    document.documentElement.setAttribute('data-upload-state', 'done');
  } catch (e) {
    bar.hidden = true;
    status.textContent = `Upload failed: ${e?.message ?? e}`;
    document.documentElement.setAttribute('data-upload-state', 'error');
  }
}

/** Wires the upload box (picker, drag and drop, copy button). */
export function setupUpload() {
  const input = $('upload-input');
  input.addEventListener('change', () => {
    if (input.files?.[0]) upload(input.files[0]);
  });
  const zone = $('upload');
  zone.addEventListener('dragover', (e) => { e.preventDefault(); zone.classList.add('drag'); });
  zone.addEventListener('dragleave', () => zone.classList.remove('drag'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('drag');
    const f = e.dataTransfer?.files?.[0];
    if (f) upload(f);
  });
  $('upload-copy').addEventListener('click', async () => {
    const text = $('upload-link').value;
    try {
      await navigator.clipboard.writeText(text);
      $('upload-copy').textContent = 'Copied';
    } catch {
      $('upload-link').select();
      $('upload-copy').textContent = 'Press Ctrl+C';
    }
  });
  input.disabled = false;
}
