// Directories in the tab. The wasm module's `LafsGrid` (crates/wasm/src/grid.rs) is a grid
// client that reads and writes the storage servers directly; this script only draws the listing
// and routes the URL fragment.
//
// Fragments: `#<dircap>` opens a directory; `#<dircap>&path=a/b` the folder a/b under it (the
// breadcrumb). A file opens as `#<filecap>` in the file viewer (files.js).
//
// Uploads into a folder are encrypted in the tab and their ciphertext goes to the gateway's upload
// session (files.js), which erasure-codes and stores it; the tab then links the file's cap into
// the folder. With `?direct=on` the tab encodes itself (`LafsGrid.startUpload`: AES, Reed-Solomon
// and hashes in wasm) and writes the shares straight to the storage servers.
//
// What leaves the tab: `GET /grid/servers` to the gateway (public), storage indexes, ciphertext
// and signed shares to the storage servers, for a file's size `GET /ciphertext/<verifycap>?t=ueb`
// (public), and an upload's ciphertext and selection index to the gateway's upload session.
// Never a directory cap, a file readcap or a key.
//
// A self-contained link (`#<dircap>&grid=<introducer>`) needs no gateway: the storage servers
// come from the introducer (signatures checked in wasm) and uploads are encoded in the tab.

import { apiUrl, currentGrid, encodesInTab, gatewayError, gridClient, shareLink, withGrid } from './gateway.js';
import { uploadThroughGateway } from './upload.js';
import { formatSize } from './format.js';

const $ = (id) => document.getElementById(id);
const MiB = 1024 * 1024;
/** Bytes handed to the uploader per call (it encodes and sends segments as they fill). */
const UPLOAD_PIECE = 4 * MiB;

function wasm() {
  return window.wasmBindings;
}

let gridPromise = null;
let gridFor = null; // the link's `&grid=` (or '' for the gateway's servers) gridPromise serves
/**
 * The tab's grid client (one per grid, with its own random account key): over the servers the
 * gateway lists, or those of the introducer a self-contained link names.
 */
function grid() {
  const want = currentGrid()?.text ?? '';
  if (!want && gatewayError) return Promise.reject(new Error(gatewayError));
  if (gridFor !== want) {
    gridPromise = null;
    gridFor = want;
  }
  gridPromise ??= gridClient()
    .catch((e) => {
      gridPromise = null; // try again on the next navigation
      throw e;
    });
  return gridPromise;
}

let token = 0; // increments per routed fragment: a newer one cancels an older listing
let shown = null; // { root, path, cap, listing } of the folder on screen
let lastFragment = null;
let backTo = null; // { fragment, fileCap, label }: a file opened from a folder

function message(e) {
  const m = String(e?.message ?? e);
  return m.charAt(0).toUpperCase() + m.slice(1);
}

/** Splits a fragment into its cap and `path` parameter (decoded components). */
function parseFragment(fragment) {
  const [cap, ...params] = fragment.split('&');
  let path = [];
  for (const p of params) {
    const [k, v = ''] = p.split('=');
    if (k === 'path') {
      try {
        path = v.split('/').filter((c) => c !== '').map(decodeURIComponent);
      } catch {
        path = [];
      }
    }
  }
  return { cap, path };
}

function fragmentFor(root, path) {
  return path.length === 0
    ? root
    : `${root}&path=${path.map(encodeURIComponent).join('/')}`;
}

function capKind(text) {
  try {
    const info = wasm().parseCap(text);
    const kind = info.kind;
    info.free();
    return kind;
  } catch {
    return null;
  }
}

function setState(state) {
  if (state) document.documentElement.dataset.dirState = state;
  else delete document.documentElement.dataset.dirState;
}

function hide() {
  $('dir').hidden = true;
  setState(null);
}

/** Shows a "back to the folder" bar above a file opened from a listing. */
function showBack(fragment) {
  const bar = $('dir-back');
  if (backTo && backTo.fileCap === fragment.split('&')[0]) {
    const a = $('dir-back-link');
    a.href = `#${withGrid(backTo.fragment)}`;
    a.textContent = `← ${backTo.label}`;
    bar.hidden = false;
  } else {
    bar.hidden = true;
    backTo = null;
  }
}

/** Routes a fragment (called by files.js for every fragment, and once here at start). */
function route(fragment) {
  if (fragment === lastFragment) return;
  lastFragment = fragment;
  const { cap, path } = parseFragment(fragment);
  if (!cap || capKind(cap) !== 'directory') {
    token++;
    hide();
    showBack(fragment);
    return;
  }
  $('dir-back').hidden = true;
  backTo = null;
  open(cap, path, ++token).catch(() => {});
}

function reload() {
  if (!shown) return Promise.resolve();
  return open(shown.root, shown.path, ++token);
}

/** Child folders' caps by `<parent cap>/<name>`, from the listings seen in this tab. */
const childDirs = new Map();

function remember(cap, listing) {
  for (const e of listing.entries) {
    if (e.kind === 'dir' && e.name != null) childDirs.set(`${cap}/${e.name}`, e.cap);
  }
}

/** Walks `path` from `root` (folders by name) and lists the folder reached. */
async function open(root, path, t) {
  const section = $('dir');
  section.hidden = false;
  $('dir-error').hidden = true;
  $('dir-status').textContent = 'Opening the folder…';
  setState('loading');
  renderCrumbs(root, path);
  try {
    const g = await grid();
    let cap = root;
    for (let i = 0; i < path.length; i++) {
      // Folders seen in listings are not opened again on the way down (mutable folders keep
      // their cap; only the last one is read afresh).
      const key = `${cap}/${path[i]}`;
      let next = childDirs.get(key);
      if (!next) {
        const listing = JSON.parse(await g.openDir(cap));
        if (t !== token) return;
        remember(cap, listing);
        next = childDirs.get(key);
      }
      if (!next) throw new Error(`there is no folder “${path[i]}” in ${i === 0 ? 'this folder' : path[i - 1]}`);
      cap = next;
    }
    const listing = JSON.parse(await g.openDir(cap));
    if (t !== token) return;
    remember(cap, listing);
    shown = { root, path, cap, listing };
    render(listing);
    setState('shown');
  } catch (e) {
    if (t !== token) return;
    // The next navigation asks the gateway for the servers again (some may have joined or left).
    if (['no-servers', 'unreachable', 'not-enough-shares', 'not-found'].includes(e?.code)) gridPromise = null;
    shown = null;
    $('dir-list').replaceChildren();
    $('dir-tools').hidden = true;
    $('dir-share').hidden = true;
    $('dir-notice').hidden = true;
    $('dir-status').textContent = '';
    $('dir-error-message').textContent = message(e);
    $('dir-error').hidden = false;
    setState('error');
  }
}

function renderCrumbs(root, path) {
  const nav = $('dir-crumbs');
  const parts = [];
  const top = document.createElement('a');
  top.href = `#${withGrid(fragmentFor(root, []))}`;
  top.textContent = 'Folder';
  parts.push(top);
  path.forEach((name, i) => {
    const sep = document.createElement('span');
    sep.className = 'sep';
    sep.textContent = '/';
    parts.push(sep);
    const a = document.createElement('a');
    a.href = `#${withGrid(fragmentFor(root, path.slice(0, i + 1)))}`;
    a.textContent = name;
    if (i === path.length - 1) a.setAttribute('aria-current', 'page');
    parts.push(a);
  });
  nav.replaceChildren(...parts);
  const up = $('dir-up');
  up.hidden = path.length === 0;
  up.href = `#${withGrid(fragmentFor(root, path.slice(0, -1)))}`;
}

const NOTICES = {
  write: null,
  read: 'Read-only: you can open these files and folders, not change them.',
  traverse:
    'Traversal cap: only the structure is shown. Names and contents are sealed under keys this cap does not hold; each entry is a folder’s traversal cap or a file’s verifycap (enough to check and repair it).',
  verify:
    'Verifycap: it lets anyone check this directory’s shares, but shows no entries, names or contents.',
};

function render(listing) {
  const section = $('dir');
  section.dataset.level = listing.level;
  section.dataset.kind = listing.kind;
  const notice = NOTICES[listing.level];
  $('dir-notice').hidden = !notice;
  $('dir-notice').textContent = notice ?? '';
  $('dir-tools').hidden = !listing.writable;
  $('dir-mkdir-form').hidden = true;
  renderShare(listing);
  const n = listing.count;
  const where = listing.kind === 'immutable' ? 'immutable folder' : 'folder';
  $('dir-status').textContent =
    n == null ? '' : n === 0 ? `This ${where} is empty.` : `${n} item${n === 1 ? '' : 's'} in this ${where}.`;
  const list = $('dir-list');
  const rows = listing.entries.map((e) => row(e, listing.level));
  list.replaceChildren(...rows);
  list.hidden = rows.length === 0;
  fillSizes(listing.entries, rows);
}

/** Derived caps of a cap's text (computed in the tab). */
function derived(text) {
  try {
    const info = wasm().parseCap(text);
    const out = { read: info.readOnlyCap, traverse: info.traverseCap };
    info.free();
    return out;
  } catch {
    return {};
  }
}

/** Links to give away less than this cap: read-only (from a write cap), structure only. */
function renderShare(listing) {
  const box = $('dir-share');
  $('dir-share-out').hidden = true;
  $('dir-share-what').textContent = '';
  const canRead = listing.level === 'write' || listing.level === 'read';
  box.hidden = !canRead;
  $('dir-share-read').hidden = !listing.writable;
}

function showShare(fragment, what) {
  $('dir-share-link').value = shareLink(fragment);
  $('dir-share-out').hidden = false;
  $('dir-share-copy').textContent = 'Copy';
  $('dir-share-what').textContent = what;
}

const SVG = 'http://www.w3.org/2000/svg';
const ICON_PATHS = {
  // A folder and a page with a folded corner (drawn, so no emoji font is needed).
  dir: 'M1.5 3.5h5l1.5 2h6.5v8h-13z',
  file: 'M3.5 1.5h6l3 3v10h-9z M9.5 1.5v3h3',
};

function icon(kind) {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', '0 0 16 16');
  svg.setAttribute('class', `icon ${kind}`);
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS(SVG, 'path');
  path.setAttribute('d', ICON_PATHS[kind] ?? ICON_PATHS.file);
  svg.append(path);
  return svg;
}

/** One listing row: a link into a folder or to the file viewer. */
function row(e, level) {
  const li = document.createElement('li');
  li.className = 'dir-entry';
  li.dataset.kind = e.kind;
  if (e.name != null) li.dataset.name = e.name;
  const a = document.createElement('a');
  a.className = 'name';
  a.append(icon(e.kind));
  const label = document.createElement('span');
  if (e.name != null) {
    label.textContent = e.name;
  } else {
    // Traversal level: no name, only the child's traversal cap or verifycap.
    label.className = 'hidden-name';
    label.textContent = e.kind === 'dir' ? 'folder (name hidden)' : 'file (name hidden)';
  }
  a.append(label);
  const size = document.createElement('span');
  size.className = 'size';
  size.textContent = e.kind === 'dir' ? '' : formatSize(e.size);
  if (level === 'traverse') {
    // Structure only: a child folder opens at traversal level; a file's verifycap is shown.
    const code = document.createElement('code');
    code.className = 'child-cap';
    code.textContent = e.cap;
    if (e.kind === 'dir') a.href = `#${withGrid(e.cap)}`;
    li.append(a, size, code);
    return li;
  }
  if (e.kind === 'dir') {
    a.href = `#${withGrid(fragmentFor(shown.root, [...shown.path, e.name]))}`;
  } else if (e.mutable) {
    a.href = '#';
    a.addEventListener('click', (ev) => {
      ev.preventDefault();
      openMutable(e, li);
    });
  } else {
    // The name rides along in the fragment (never sent anywhere) so that Save keeps it.
    a.href = `#${withGrid(`${e.cap}${e.name != null ? `&name=${encodeURIComponent(e.name)}` : ''}`)}`;
    a.addEventListener('click', () => {
      backTo = {
        fragment: fragmentFor(shown.root, shown.path),
        fileCap: e.cap,
        label: shown.path.length ? shown.path[shown.path.length - 1] : 'Folder',
      };
    });
  }
  if (e.mutable && e.kind === 'file') {
    const tag = document.createElement('span');
    tag.className = 'tag';
    tag.textContent = 'mutable';
    a.append(tag);
  }
  li.append(a, size);
  return li;
}

/** Sizes of immutable files without one in their metadata: from the UEB (verifycap only). */
async function fillSizes(entries, rows) {
  const t = token;
  for (let i = 0; i < entries.length && i < 200; i++) {
    const e = entries[i];
    if (e.size != null || e.kind !== 'file' || e.mutable || e.literal || !e.cap.startsWith('lafsr1')) continue;
    if (currentGrid()) break; // no gateway to ask (a self-contained link): sizes stay blank
    let r = null;
    try {
      r = new (wasm().FileReader)(e.cap);
      const resp = await fetch(apiUrl(`/ciphertext/${r.verifyCap}?t=ueb`), { cache: 'no-store' });
      if (!resp.ok) continue;
      r.setUeb(new Uint8Array(await resp.arrayBuffer()));
      if (t !== token) return;
      rows[i].querySelector('.size').textContent = formatSize(r.fileSize);
    } catch {
      // The size is a nicety: the listing stands without it.
    } finally {
      r?.free();
    }
  }
}

/** A mutable file: read its latest version from the storage servers and show it here. */
async function openMutable(e, li) {
  const out = $('dir-file');
  out.hidden = false;
  out.replaceChildren(Object.assign(document.createElement('p'), { textContent: `Reading ${e.name}…` }));
  try {
    const bytes = await (await grid()).readFile(e.cap);
    const blob = new Blob([bytes]);
    const title = Object.assign(document.createElement('h3'), { textContent: e.name });
    const save = Object.assign(document.createElement('a'), {
      href: URL.createObjectURL(blob),
      download: e.name,
      textContent: `Save (${formatSize(bytes.length)})`,
    });
    const parts = [title];
    let text = null;
    try {
      text = bytes.includes(0) ? null : new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      text = null;
    }
    if (text != null) parts.push(Object.assign(document.createElement('pre'), { textContent: text }));
    parts.push(save);
    out.replaceChildren(...parts);
  } catch (err) {
    out.replaceChildren(Object.assign(document.createElement('p'), { textContent: message(err), className: 'bad' }));
  }
  li.scrollIntoView?.({ block: 'nearest' });
}

function busy(text) {
  $('dir-op-status').textContent = text;
  document.documentElement.dataset.dirOp = text ? 'busy' : 'idle';
}

async function mkdir(name) {
  if (!shown?.listing.writable) return;
  busy(`Creating ${name}…`);
  try {
    await (await grid()).mkdir(shown.cap, name);
    busy('');
    $('dir-mkdir-form').hidden = true;
    $('dir-mkdir-name').value = '';
    await reload();
    document.documentElement.dataset.dirOp = 'done';
  } catch (e) {
    busy('');
    $('dir-op-status').textContent = `Could not create the folder: ${message(e)}`;
    document.documentElement.dataset.dirOp = 'error';
  }
}

/**
 * Adds `f` to the folder `target` (a write cap) with the tab's own grid client: encrypted,
 * erasure-coded and hashed in wasm, its shares written (signed) to the storage servers.
 * Resolves to the file's read cap.
 */
async function encodeHere(g, target, f, label, bar) {
  // Piece by piece: the file is never held whole, in JS or in wasm.
  const up = g.startUpload(target, f.name);
  try {
    for (let off = 0; off < f.size; off += UPLOAD_PIECE) {
      busy(`Encrypting and uploading ${label}: ${formatSize(off)} of ${formatSize(f.size)}…`);
      await up.write(new Uint8Array(await f.slice(off, off + UPLOAD_PIECE).arrayBuffer()));
      bar.value = Math.min(off + UPLOAD_PIECE, f.size);
    }
    busy(`Linking ${label} into the folder…`);
    return await up.finish();
  } finally {
    up.free();
  }
}

/**
 * Adds `f` to the folder `target`: encrypted in the tab (WebCrypto), its ciphertext erasure-coded
 * and stored by the gateway's upload session (several times faster than encoding in wasm on the
 * page's thread; the gateway never sees the key), then linked by the tab's grid client. A gateway
 * without upload sessions gets the tab's own encoder instead. Resolves to the file's read cap.
 */
async function uploadVia(g, target, f, label, bar) {
  if (encodesInTab()) return encodeHere(g, target, f, label, bar);
  let up;
  try {
    busy(`Encrypting and uploading ${label}…`);
    up = await uploadThroughGateway(f, {
      onProgress: (n) => {
        bar.value = n;
        busy(`Encrypting and uploading ${label}: ${formatSize(n)} of ${formatSize(f.size)}…`);
      },
      onStatus: () => busy(`Storing the last shares of ${label}…`),
    });
  } catch (e) {
    if (e?.code !== 'no-upload-sessions') throw e;
    return encodeHere(g, target, f, label, bar);
  }
  busy(`Linking ${label} into the folder…`);
  return g.linkFile(target, f.name, up.readCap, f.size);
}

async function uploadHere(files) {
  if (!shown?.listing.writable) return;
  const target = shown.cap;
  try {
    const g = await grid();
    let i = 0;
    const bar = $('dir-progress');
    for (const f of files) {
      i++;
      const label = `${f.name}${files.length > 1 ? ` (${i} of ${files.length})` : ''}`;
      bar.max = Math.max(f.size, 1);
      bar.value = 0;
      bar.hidden = false;
      try {
        await uploadVia(g, target, f, label, bar);
      } finally {
        bar.hidden = true;
      }
    }
    busy('');
    await reload();
    $('dir-op-status').textContent = `Uploaded ${files.length === 1 ? files[0].name : `${files.length} files`}.`;
    document.documentElement.dataset.dirOp = 'done';
  } catch (e) {
    busy('');
    $('dir-op-status').textContent = `Upload failed: ${message(e)}`;
    document.documentElement.dataset.dirOp = 'error';
  }
}

function setup() {
  $('dir-new-folder').addEventListener('click', () => {
    const form = $('dir-mkdir-form');
    form.hidden = !form.hidden;
    if (!form.hidden) $('dir-mkdir-name').focus();
  });
  $('dir-mkdir-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const name = $('dir-mkdir-name').value.trim();
    if (name) mkdir(name);
  });
  const input = $('dir-upload-input');
  input.addEventListener('change', () => {
    const files = [...(input.files ?? [])];
    input.value = '';
    if (files.length) uploadHere(files);
  });
  const section = $('dir');
  section.addEventListener('dragover', (e) => {
    if (!shown?.listing.writable) return;
    e.preventDefault();
    section.classList.add('drag');
  });
  section.addEventListener('dragleave', () => section.classList.remove('drag'));
  section.addEventListener('drop', (e) => {
    section.classList.remove('drag');
    if (!shown?.listing.writable) return;
    e.preventDefault();
    const files = [...(e.dataTransfer?.files ?? [])];
    if (files.length) uploadHere(files);
  });
  $('dir-share-read').addEventListener('click', () => {
    if (!shown) return;
    const read = derived(shown.root).read;
    if (read) {
      showShare(
        fragmentFor(read, shown.path),
        'Anyone with this link can open this folder and everything in it, but change nothing.',
      );
    }
  });
  $('dir-share-traverse').addEventListener('click', () => {
    if (!shown) return;
    const t = derived(shown.cap).traverse;
    if (t) {
      showShare(
        t,
        'This link shows only the structure below this folder (how many entries, which are folders) and lets its holder check and repair the files, without any name or content.',
      );
    }
  });
  $('dir-share-copy').addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText($('dir-share-link').value);
      $('dir-share-copy').textContent = 'Copied';
    } catch {
      $('dir-share-link').select();
      $('dir-share-copy').textContent = 'Press Ctrl+C';
    }
  });
  window.lafsDirs = { route };
  route(location.hash.replace(/^#/, ''));
}

if (window.wasmBindings) setup();
else addEventListener('TrunkApplicationStarted', setup, { once: true });
