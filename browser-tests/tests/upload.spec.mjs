// Uploading from the web app's main page: the tab encrypts a chunk while it sends the previous
// one to a chunked upload session of the gateway (POST /ciphertext/uploads, docs/spec/gateway.md),
// so it holds a few chunks whatever the file size. Checked here against a real `lafs demo` grid:
// the result link works and `lafs get` returns the same bytes; a chunk cut by the network is
// resumed; a gateway that goes away or refuses gives a clear message; memory stays bounded
// (LAFS_UPLOAD_MIB sets the size of that check, default 128; 512 for the acceptance figure).
import { test, expect } from '@playwright/test';
import { createHash, randomBytes } from 'node:crypto';
import { openSync, writeSync, closeSync, rmSync, createReadStream, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { startGrid, lafsBin } from '../grid.mjs';
import { launchRaw, openTab } from '../raw-chromium.mjs';
import { saveFile } from '../helpers.mjs';

const MiB = 1 << 20;
const CHUNK = 8 * MiB; // web/files.js UPLOAD_CHUNK
const MEM_MIB = Number(process.env.LAFS_UPLOAD_MIB ?? 128);
const sha = (b) => createHash('sha256').update(b).digest('hex');

let grid;
test.describe.configure({ mode: 'serial' });
test.beforeAll(async () => {
  test.setTimeout(600_000); // may build the lafs binary first
  grid = await startGrid();
});
test.afterAll(async () => {
  await grid?.stop();
});

async function openApp(page) {
  await page.goto(`${grid.url}/`);
  await expect(page.locator('html')).toHaveAttribute('data-lafs-ready', 'true');
}

/** Chooses `data` in the upload input and waits for the upload to end: the cap, or null. */
async function uploadBuffer(page, data, state = 'done') {
  await page.evaluate(() => document.documentElement.removeAttribute('data-upload-state'));
  await page.locator('#upload-input').setInputFiles({ name: 'f.bin', mimeType: 'application/octet-stream', buffer: data });
  await expect(page.locator('html')).toHaveAttribute('data-upload-state', state, { timeout: 120_000 });
  if (state !== 'done') return null;
  const link = await page.locator('#upload-link').inputValue();
  return link.slice(link.indexOf('#') + 1).split('&')[0];
}

/** Records the progress bar's values as they change. */
async function watchProgress(page) {
  await page.evaluate(() => {
    window.progressSeen = [];
    const bar = document.getElementById('upload-progress');
    new MutationObserver(() => window.progressSeen.push([Number(bar.value), Number(bar.max)]))
      .observe(bar, { attributes: true, attributeFilter: ['value'] });
  });
}

test('a file uploaded from the tab in chunks: progress, a working link, the same bytes through lafs get', async ({ page }) => {
  test.setTimeout(180_000);
  const original = randomBytes(2 * CHUNK + 12345);
  await openApp(page);
  await watchProgress(page);
  const requests = [];
  page.on('request', (r) => requests.push(r));
  const cap = await uploadBuffer(page, original);
  expect(cap).toMatch(/^lafsr1/);
  expect(sha(grid.get(cap))).toBe(sha(original));

  // One session, three chunks in order, then finish; never a readcap or key on the wire.
  const api = requests.filter((r) => new URL(r.url()).pathname.startsWith('/ciphertext'));
  const lines = api.map((r) => `${r.method()} ${new URL(r.url()).pathname.replace(/[0-9a-f]{32}/, 'ID')}${new URL(r.url()).search.replace(/selection_index=[0-9a-f]+/, 'selection_index=S')}`);
  expect(lines).toEqual([
    `POST /ciphertext/uploads?selection_index=S&size=${original.length}`,
    'PUT /ciphertext/uploads/ID?offset=0',
    `PUT /ciphertext/uploads/ID?offset=${CHUNK}`,
    `PUT /ciphertext/uploads/ID?offset=${2 * CHUNK}`,
    'POST /ciphertext/uploads/ID/finish',
  ]);
  const key = cap.slice(6, 40);
  for (const r of requests) {
    expect(r.url()).not.toContain(cap);
    expect(r.url()).not.toContain(key);
    expect(JSON.stringify(await r.allHeaders())).not.toContain(key);
  }
  // The progress bar went up to the size, chunk by chunk.
  const seen = await page.evaluate(() => window.progressSeen);
  expect(seen.map(([v]) => v)).toEqual(expect.arrayContaining([CHUNK, 2 * CHUNK, original.length]));
  expect(seen.at(-1)).toEqual([original.length, original.length]);
  await expect(page.locator('#upload-status')).toContainText('Anyone with this link can read it');

  // The link opens in the page and the copy button is there.
  await expect(page.locator('#upload-copy')).toBeVisible();
  const link = await page.locator('#upload-link').inputValue();
  expect(link).toMatch(/#lafsr1[a-z0-9]+&name=f\.bin$/);
  await page.goto(link);
  await expect(page.locator('html')).toHaveAttribute('data-file-state', 'shown', { timeout: 60_000 });
  // The link carries the file's name (in the fragment only): Save keeps it, and no request
  // (the save's own included) names the file.
  await expect(page.locator('#file-download')).toContainText('Save f.bin');
  const before = requests.length;
  const download = await saveFile(page);
  expect(download.suggestedFilename()).toBe('f.bin');
  expect(sha(readFileSync(await download.path()))).toBe(sha(original));
  for (const r of requests.slice(before)) expect(r.url()).not.toContain('f.bin');
});

test('an empty file and a one-byte file', async ({ page }) => {
  test.setTimeout(60_000);
  await openApp(page);
  for (const data of [Buffer.alloc(0), Buffer.from([7])]) {
    const cap = await uploadBuffer(page, data);
    expect(Buffer.compare(grid.get(cap), data)).toBe(0);
  }
});

test('a chunk cut by the network is sent again from where the gateway stopped', async ({ page }) => {
  test.setTimeout(120_000);
  // A small second chunk: Playwright's interception copies every intercepted body.
  const original = randomBytes(CHUNK + 100);
  await openApp(page);
  let cut = 0;
  await page.route((u) => u.pathname.startsWith('/ciphertext/uploads/') && u.search === `?offset=${CHUNK}`, async (route) => {
    if (cut++ === 0) await route.abort('connectionreset');
    else await route.continue();
  });
  const cap = await uploadBuffer(page, original);
  expect(cut).toBe(2);
  expect(sha(grid.get(cap))).toBe(sha(original));
});

test('a gateway that stops answering mid-upload gives a clear error', async ({ page }) => {
  test.setTimeout(120_000);
  await openApp(page);
  // After the first chunk, nothing reaches the gateway any more.
  await page.route((u) => u.pathname.startsWith('/ciphertext/uploads') && !u.search.includes('offset=0') && !u.search.includes('selection_index'), (route) => route.abort('connectionrefused'));
  await uploadBuffer(page, randomBytes(CHUNK + 1000), 'error');
  await expect(page.locator('#upload-status')).toHaveText(/^Upload failed: the gateway stopped answering after 8\.0 MiB had been sent/);
  await expect(page.locator('#upload-progress')).toBeHidden();
  await expect(page.locator('#upload-result')).toBeHidden();
});

test('refusals by the gateway are shown with its reason, and the session is given up', async ({ page }) => {
  test.setTimeout(60_000);
  await openApp(page);
  // Too large for the gateway (413 at the start).
  const start = (u) => u.pathname === '/ciphertext/uploads';
  await page.route(start, (route) =>
    route.fulfill({ status: 413, contentType: 'text/plain', body: 'this gateway takes uploads of at most 1000 bytes; this one is 5000\n' }));
  await uploadBuffer(page, randomBytes(5000), 'error');
  await expect(page.locator('#upload-status')).toHaveText(
    'Upload failed: the gateway refused the start of the upload as too large: this gateway takes uploads of at most 1000 bytes; this one is 5000',
  );
  await page.unroute(start);

  // The grid fails during the upload (503 to a chunk): the message, and a DELETE of the session.
  const deletes = [];
  page.on('request', (r) => { if (r.method() === 'DELETE') deletes.push(new URL(r.url()).pathname); });
  await page.route((u) => u.pathname.startsWith('/ciphertext/uploads/') && u.search === `?offset=${CHUNK}`, (route) =>
    route.fulfill({ status: 503, contentType: 'text/plain', body: 'upload failed: only 2 storage servers accepted shares, 7 are needed\n' }));
  await uploadBuffer(page, randomBytes(CHUNK + 1000), 'error');
  await expect(page.locator('#upload-status')).toHaveText(
    'Upload failed: the gateway answered 503 to a chunk of the upload: upload failed: only 2 storage servers accepted shares, 7 are needed',
  );
  await expect.poll(() => deletes.length).toBe(1);
  expect(deletes[0]).toMatch(/^\/ciphertext\/uploads\/[0-9a-f]{32}$/);
});

/** Writes `size` random-ish bytes to `path` in pieces; returns their SHA-256. */
function writeLarge(path, size) {
  const fd = openSync(path, 'w');
  const piece = randomBytes(4 * MiB);
  const h = createHash('sha256');
  for (let off = 0; off < size; off += piece.length) {
    const part = piece.subarray(0, Math.min(piece.length, size - off));
    part.writeUInt32BE(off / piece.length, 0); // no two segments equal
    writeSync(fd, part);
    h.update(part);
  }
  closeSync(fd);
  return h.digest('hex');
}

async function shaOfFile(path) {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk);
  return h.digest('hex');
}

// Measured in a Chromium of its own over a bare DevTools pipe (../raw-chromium.mjs): Playwright's
// network instrumentation keeps copies of request bodies, which would count as the tab's memory.
test(`memory stays bounded while a ${MEM_MIB} MiB file is uploaded`, async () => {
  test.setTimeout(900_000);
  const size = MEM_MIB * MiB;
  const input = join(grid.dir, 'upload-large.bin');
  const want = writeLarge(input, size);
  const chrome = await launchRaw();
  try {
    const tab = await openTab(chrome, `${grid.url}/`);
    const until = async (pred, ms) => {
      const t0 = Date.now();
      while (!(await pred())) {
        if (Date.now() - t0 > ms) throw new Error('timed out');
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    await until(async () => (await tab.evaluate('document.documentElement?.dataset.lafsReady')) === 'true', 60_000);
    /** Live JS memory (heap + ArrayBuffer contents) of the page after a full GC. */
    const live = async () => {
      await chrome.send('HeapProfiler.collectGarbage', {}, tab.sessionId);
      const u = await chrome.send('Runtime.getHeapUsage', {}, tab.sessionId);
      return (u.usedSize + (u.backingStorageSize ?? 0)) / MiB;
    };
    /** Resident memory of all the browser's processes (the page, the browser, the network service). */
    const rssAll = async () => Object.values(await chrome.rss()).reduce((a, b) => a + b, 0);
    const rssRenderer = async () => (await chrome.rss()).renderer ?? 0;
    const uploadOnce = async (measures) => {
      const { root } = await chrome.send('DOM.getDocument', {}, tab.sessionId);
      const { nodeId } = await chrome.send('DOM.querySelector', { nodeId: root.nodeId, selector: '#upload-input' }, tab.sessionId);
      const peaks = await Promise.all(measures.map((m) => m()));
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          const now = await Promise.all(measures.map((m) => m()));
          now.forEach((v, i) => { peaks[i] = Math.max(peaks[i], v); });
          await new Promise((r) => setTimeout(r, 250));
        }
      })();
      const t0 = performance.now();
      await tab.evaluate("document.getElementById('upload-input').value = ''");
      await chrome.send('DOM.setFileInputFiles', { nodeId, files: [input] }, tab.sessionId);
      await until(async () => ['done', 'error'].includes(await tab.evaluate('document.documentElement.dataset.uploadState')), 800_000);
      const secs = (performance.now() - t0) / 1000;
      sampling = false;
      await sampler;
      expect(await tab.evaluate('document.documentElement.dataset.uploadState'), await tab.evaluate("document.getElementById('upload-status').textContent")).toBe('done');
      const link = await tab.evaluate("document.getElementById('upload-link').value");
      return [secs, peaks, link.slice(link.indexOf('#') + 1).split('&')[0]];
    };
    // Warm up (code compiled, WebCrypto ready) with a small upload.
    const small = join(grid.dir, 'upload-small.bin');
    writeLarge(small, 1 * MiB);
    const { root } = await chrome.send('DOM.getDocument', {}, tab.sessionId);
    const { nodeId } = await chrome.send('DOM.querySelector', { nodeId: root.nodeId, selector: '#upload-input' }, tab.sessionId);
    await chrome.send('DOM.setFileInputFiles', { nodeId, files: [small] }, tab.sessionId);
    await until(async () => (await tab.evaluate('document.documentElement.dataset.uploadState')) === 'done', 60_000);
    await new Promise((r) => setTimeout(r, 1000));

    // 1. As in use: resident memory, collected whenever V8 decides.
    const base = [await rssRenderer(), await rssAll()];
    const [secs, [peakRenderer, peakAll], cap] = await uploadOnce([rssRenderer, rssAll]);
    // 2. What the page really holds: live memory after a forced GC at every sample.
    const baseLive = await live();
    const [secs2, [peakLive], cap2] = await uploadOnce([live]);
    expect(cap2).toMatch(/^lafsr1/);
    const t = { timings: await tab.evaluate('JSON.stringify(window.lafsTimings.upload)') };
    console.log(
      `upload of ${MEM_MIB} MiB from the page: ${(size / 1e6 / secs).toFixed(1)} MB/s (second run, GC forced every 250 ms: ${(size / 1e6 / secs2).toFixed(1)}); ` +
        `renderer RSS ${base[0].toFixed(0)} -> peak ${peakRenderer.toFixed(0)} MiB (+${(peakRenderer - base[0]).toFixed(0)}); ` +
        `all browser processes ${base[1].toFixed(0)} -> peak ${peakAll.toFixed(0)} MiB (+${(peakAll - base[1]).toFixed(0)}); ` +
        `live JS memory of the page after GC ${baseLive.toFixed(1)} -> peak ${peakLive.toFixed(1)} MiB (+${(peakLive - baseLive).toFixed(1)}); ${t.timings}`,
    );
    // Holding the file (or its ciphertext) would take at least its size. The pipeline holds a
    // few 8 MiB chunks whatever the size: the one being sent, the next one read and its
    // ciphertext (24 MiB reachable; the rest of what is measured is buffers not yet released
    // when sampled). Measured: live +24 to +35 MiB, over the 32 MiB that a
    // 64 MiB file's half-size bound allowed; all processes +130 to +171 MiB for 64 to 512 MiB
    // (garbage chunks and Blobs waiting for collection, the network service's buffers). 64 MiB
    // (8 chunks) is over that and half of the default 128 MiB file.
    expect(peakLive - baseLive).toBeLessThan(Math.min(64, MEM_MIB / 2));
    expect(peakAll - base[1]).toBeLessThan(256);
    // The file came back byte for byte through the CLI.
    const out = join(grid.dir, 'upload-large.out');
    const fd = openSync(out, 'w');
    try {
      execFileSync(lafsBin(), ['get', '--node', join(grid.dir, 'client'), cap], { stdio: ['ignore', fd, 'pipe'] });
    } finally {
      closeSync(fd);
    }
    expect(await shaOfFile(out)).toBe(want);
    rmSync(out, { force: true });
  } finally {
    await chrome.close();
    rmSync(input, { force: true });
  }
});
