// Opening and uploading files in the tab. The wasm module (crates/wasm, `FileReader` and
// `FileWriter`) holds the key, verifies and decrypts; this script only moves bytes between the
// gateway's verifycap endpoints (docs/spec/gateway.md, `/ciphertext`) and the page.
//
// What leaves the tab: the verifycap (public), ciphertext, and the selection index (public).
// Never the readcap or the key: the cap stays in the URL fragment, which browsers do not send.

const MiB = 1024 * 1024;
/** Bytes of ciphertext fetched (and verified) per request. */
const BATCH_BYTES = 4 * MiB;
/** Text files larger than this are offered as a download only. */
const MAX_TEXT_SHOWN = 2 * MiB;

const $ = (id) => document.getElementById(id);

/** The gateway's API root: the origin serving this page. */
const apiUrl = (path) => new URL(path, location.origin).href;

let current = 0; // increments per opened link: a newer link cancels an older download
let shownUrl = null;
/** Timings of the last download/upload in milliseconds (read by the benchmark test). */
window.lafsTimings = {};

function wasm() {
  return window.wasmBindings;
}

// AES-128-CTR through WebCrypto (≈3.5× the pure-Rust wasm AES, docs/performance.md) when the
// browser has it and it gives the same keystream as the wasm code; else the wasm path. Open the
// page with `?crypto=wasm` to force the wasm path.
let webCryptoCheck = null;

/** The 16-byte big-endian counter block of file offset `offset` (a multiple of 16). */
function counterAt(offset) {
  const c = new Uint8Array(16);
  let n = BigInt(offset) / 16n;
  for (let i = 15; i >= 0 && n > 0n; i--) {
    c[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return c;
}

async function importAesKey(raw) {
  try {
    return await crypto.subtle.importKey('raw', raw, 'AES-CTR', false, ['encrypt', 'decrypt']);
  } finally {
    raw.fill(0);
  }
}

/** `data` as the bytes at `offset`, XORed with the file's keystream (WebCrypto). */
async function aesCtr(key, offset, data) {
  const alg = { name: 'AES-CTR', counter: counterAt(offset), length: 128 };
  return new Uint8Array(await crypto.subtle.encrypt(alg, key, data));
}

/** Whether to use WebCrypto: available, not disabled, and agreeing with wasm on a test vector. */
function useWebCrypto() {
  webCryptoCheck ??= (async () => {
    if (new URLSearchParams(location.search).get('crypto') === 'wasm') return false;
    if (!globalThis.crypto?.subtle) return false;
    const w = new (wasm().FileWriter)();
    try {
      const key = await importAesKey(w.webCryptoKey());
      const data = new Uint8Array(80).map((_, i) => i * 3);
      const ours = w.encrypt(48, data.slice());
      const theirs = await aesCtr(key, 48, data);
      return ours.length === theirs.length && ours.every((b, i) => b === theirs[i]);
    } catch {
      return false;
    } finally {
      w.free();
    }
  })();
  return webCryptoCheck;
}

function setProgress(done, total) {
  const bar = $('file-progress');
  bar.hidden = false;
  bar.max = Math.max(total, 1);
  bar.value = total === 0 ? 1 : done;
  $('file-status').textContent =
    total === 0 ? '' : `${formatSize(done)} of ${formatSize(total)} verified and decrypted`;
}

function formatSize(n) {
  if (n < 1024) return `${n} bytes`;
  if (n < MiB) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 * MiB) return `${(n / MiB).toFixed(1)} MiB`;
  return `${(n / 1024 / MiB).toFixed(2)} GiB`;
}

function resetFile() {
  if (shownUrl) URL.revokeObjectURL(shownUrl);
  shownUrl = null;
  $('file').hidden = true;
  $('file-error').hidden = true;
  $('file-view').replaceChildren();
  $('file-download').hidden = true;
  $('file-progress').hidden = true;
  $('file-status').textContent = '';
  document.documentElement.removeAttribute('data-file-state');
}

function showFileError(kind, message) {
  $('file-progress').hidden = true;
  const box = $('file-error');
  box.dataset.kind = kind;
  $('file-error-title').textContent =
    kind === 'integrity'
      ? 'This file failed its integrity check'
      : 'The file could not be fetched';
  $('file-error-message').textContent =
    kind === 'integrity'
      ? `${message}. Nothing of it is shown: the data is damaged or was tampered with, or the link names another file.`
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

/** Shows verified plaintext: inline for text, images, PDF, audio and video; always a download. */
function showFile(parts, size, name) {
  const first = parts.find((p) => p.length > 0) ?? new Uint8Array(0);
  const head = first.subarray(0, 64);
  let type = sniff(head);
  if (!type && size > 0 && size <= MAX_TEXT_SHOWN) {
    const all = new Uint8Array(size);
    let o = 0;
    for (const p of parts) { all.set(p, o); o += p.length; }
    if (isText(all)) type = 'text/plain';
  }
  const blob = new Blob(parts, { type: type ?? 'application/octet-stream' });
  shownUrl = URL.createObjectURL(blob);
  const view = $('file-view');
  let el = null;
  if (type === 'text/plain') {
    el = document.createElement('pre');
    blob.text().then((t) => { el.textContent = t; });
  } else if (type?.startsWith('image/')) {
    el = document.createElement('img');
    el.alt = 'the file';
    el.src = shownUrl;
  } else if (type === 'application/pdf') {
    el = document.createElement('iframe');
    el.title = 'the file (PDF)';
    el.src = shownUrl;
  } else if (type?.startsWith('audio/') || type?.startsWith('video/')) {
    el = document.createElement(type.startsWith('audio/') ? 'audio' : 'video');
    el.controls = true;
    el.src = shownUrl;
  }
  if (el) {
    el.id = 'file-inline';
    view.replaceChildren(el);
  }
  const a = $('file-download');
  a.href = shownUrl;
  a.download = name ?? `lafs-file${type && EXT[type] ? '.' + EXT[type] : ''}`;
  a.textContent = `Save the file (${formatSize(size)}${type ? ', ' + type : ''})`;
  a.hidden = false;
  $('file-progress').hidden = true;
  $('file-status').textContent = `${formatSize(size)}, verified against the cap and decrypted in this tab.`;
  $('file').dataset.type = type ?? '';
  document.documentElement.setAttribute('data-file-state', 'shown');
}

/** Downloads, verifies and decrypts the file of a readcap. */
async function download(capText, token) {
  const r = new (wasm().FileReader)(capText);
  try {
    const t0 = performance.now();
    const fast = await useWebCrypto();
    const key = fast ? await importAesKey(r.webCryptoKey()) : null;
    document.documentElement.dataset.crypto = fast ? 'webcrypto' : 'wasm';
    const base = apiUrl(`/ciphertext/${r.verifyCap}`);
    $('file-status').textContent = 'Fetching the file…';
    const ueb = new Uint8Array(await (await fetchOk(`${base}?t=ueb`)).arrayBuffer());
    r.setUeb(ueb);
    const size = r.fileSize;
    const segSize = r.segmentSize;
    const nseg = r.numSegments;
    const perBatch = Math.max(1, Math.floor(BATCH_BYTES / segSize));
    const parts = [];
    let done = 0;
    setProgress(0, size);
    const fetchBatch = (a) => {
      const b = Math.min(nseg - 1, a + perBatch - 1);
      const start = a * segSize;
      const end = Math.min((b + 1) * segSize, size);
      // A batch of every segment needs no proof beyond the verified root.
      const whole = a === 0 && b === nseg - 1;
      return Promise.all([
        whole
          ? Promise.resolve('{"proof":[]}')
          : fetchOk(`${base}?t=proof&segments=${a}-${b}`).then((x) => x.text()),
        fetchOk(base, { headers: { Range: `bytes=${start}-${end - 1}` } })
          .then((x) => x.arrayBuffer())
          .then((x) => new Uint8Array(x)),
      ]).then(([proof, bytes]) => ({ a, proof, bytes, expected: end - start }));
    };
    let next = nseg > 0 ? fetchBatch(0) : null;
    for (let a = 0; a < nseg; a += perBatch) {
      const batch = await next;
      if (token !== current) return;
      // Fetch the next batch while this one is verified and decrypted.
      next = a + perBatch < nseg ? fetchBatch(a + perBatch) : null;
      if (batch.bytes.length !== batch.expected) {
        throw new FetchError(`the gateway sent ${batch.bytes.length} bytes instead of ${batch.expected}`);
      }
      r.addProof(batch.proof);
      let plain;
      if (key && (batch.a * segSize) % 16 === 0) {
        // Verified in wasm first: nothing is decrypted unless every segment proved.
        const start = r.verifySegments(batch.a, batch.bytes);
        plain = await aesCtr(key, start, batch.bytes);
      } else {
        plain = r.openSegments(batch.a, batch.bytes);
      }
      parts.push(plain);
      done += plain.length;
      setProgress(done, size);
    }
    window.lafsTimings.download = { bytes: size, ms: performance.now() - t0 };
    showFile(parts, size, null);
  } finally {
    r.free();
  }
}

/** Opens the cap of the current URL fragment, if it names a file this page can read. */
async function openFragment() {
  const token = ++current;
  resetFile();
  const fragment = location.hash.replace(/^#/, '');
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
      showFile([data], data.length, null);
    } else if (info.kind === 'readcap') {
      await download(info.text, token);
    } else {
      $('file').hidden = true;
      document.documentElement.removeAttribute('data-file-state');
    }
  } catch (e) {
    if (token !== current) return;
    if (e instanceof FetchError) showFileError('fetch', e.message);
    else if (e?.code === 'integrity') showFileError('integrity', capitalise(String(e.message)));
    else showFileError('fetch', String(e?.message ?? e));
  } finally {
    info.free();
  }
}

function capitalise(s) {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** Encrypts a file in the tab and uploads the ciphertext (`PUT /ciphertext`). */
async function upload(file) {
  const w = new (wasm().FileWriter)();
  const out = $('upload-result');
  const bar = $('upload-progress');
  const status = $('upload-status');
  out.hidden = true;
  document.documentElement.setAttribute('data-upload-state', 'busy');
  try {
    bar.hidden = false;
    bar.max = Math.max(file.size, 1) * 2;
    bar.value = 0;
    status.textContent = `Encrypting ${file.name} (${formatSize(file.size)})…`;
    const t0 = performance.now();
    const fast = await useWebCrypto();
    const key = fast ? await importAesKey(w.webCryptoKey()) : null;
    document.documentElement.dataset.crypto = fast ? 'webcrypto' : 'wasm';
    const parts = [];
    for (let off = 0; off < file.size; off += BATCH_BYTES) {
      const chunk = new Uint8Array(await file.slice(off, off + BATCH_BYTES).arrayBuffer());
      // BATCH_BYTES is a multiple of 16: every piece starts on a counter block.
      parts.push(key ? await aesCtr(key, off, chunk) : w.encrypt(off, chunk));
      bar.value = Math.min(off + BATCH_BYTES, file.size);
    }
    const body = new Blob(parts);
    const t1 = performance.now();
    status.textContent = `Uploading ${formatSize(file.size)} of ciphertext…`;
    const verifyCap = await new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('PUT', apiUrl(`/ciphertext?selection_index=${w.selectionIndex}`));
      xhr.upload.onprogress = (e) => { bar.value = file.size + e.loaded; };
      xhr.onload = () =>
        xhr.status === 200
          ? resolve(xhr.responseText.trim())
          : reject(new Error(`the gateway answered ${xhr.status}: ${xhr.responseText.trim().slice(0, 300)}`));
      xhr.onerror = () => reject(new Error('the gateway could not be reached'));
      xhr.send(body);
    });
    const readCap = w.readCap(verifyCap);
    const t2 = performance.now();
    window.lafsTimings.upload = { bytes: file.size, encryptMs: t1 - t0, uploadMs: t2 - t1 };
    const link = `${location.origin}${location.pathname}#${readCap}`;
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
  } finally {
    w.free();
  }
}

function setupUpload() {
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

function start() {
  setupUpload();
  window.addEventListener('hashchange', openFragment);
  openFragment();
}

if (window.wasmBindings) start();
else addEventListener('TrunkApplicationStarted', start, { once: true });
