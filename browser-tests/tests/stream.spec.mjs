// Streaming through the web app's service worker (web/sw.js) against a real local grid: saves
// are streamed to disk byte for byte, media seek through Range requests answered from the page's
// random access, memory stays flat while a large file is saved, a failed integrity check aborts
// the stream, and no request (the page's or the worker's) carries the readcap.
//
// LAFS_STREAM_MIB (default 160) sets the size of the flat-memory check; 512 is the acceptance
// figure (about a minute more on a 2-core machine, and 1.7 GB of shares in the temporary grid).
import { test, expect } from '@playwright/test';
import { createHash } from 'node:crypto';
import { createReadStream, openSync, writeSync, closeSync, readFileSync, rmSync, mkdtempSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchRaw, openTab } from '../raw-chromium.mjs';
import {
  bytes, sha, useGrid, recordRequests, expectNoSecret, openFile, saveFile, uploadFromTab,
} from '../helpers.mjs';

const MiB = 1 << 20;
const FLAT_MIB = Number(process.env.LAFS_STREAM_MIB ?? 160);

const grid = useGrid();

async function shaOfFile(path) {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk);
  return h.digest('hex');
}

/** A mono 16-bit PCM WAV of `seconds` at `rate` Hz: a 440 Hz tone. */
function wav(seconds, rate = 44_100) {
  const samples = seconds * rate;
  const b = Buffer.alloc(44 + samples * 2);
  b.write('RIFF', 0);
  b.writeUInt32LE(36 + samples * 2, 4);
  b.write('WAVEfmt ', 8);
  b.writeUInt32LE(16, 16);
  b.writeUInt16LE(1, 20); // PCM
  b.writeUInt16LE(1, 22); // mono
  b.writeUInt32LE(rate, 24);
  b.writeUInt32LE(rate * 2, 28);
  b.writeUInt16LE(2, 32);
  b.writeUInt16LE(16, 34);
  b.write('data', 36);
  b.writeUInt32LE(samples * 2, 40);
  for (let i = 0; i < samples; i++) {
    b.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / rate)), 44 + i * 2);
  }
  return b;
}

/** `lafs put` of a file written in pieces (large files never sit in this process's memory). */
function putLarge(size, seed) {
  const path = join(grid.dir, `large-${seed}.bin`);
  const fd = openSync(path, 'w');
  const piece = bytes(4 * MiB, seed);
  const h = createHash('sha256');
  for (let off = 0; off < size; off += piece.length) {
    const part = piece.subarray(0, Math.min(piece.length, size - off));
    // Vary each piece so that no two segments are equal.
    part.writeUInt32BE(off / piece.length, 0);
    writeSync(fd, part);
    h.update(part);
  }
  closeSync(fd);
  const cap = grid.cli('put', path).toString().trim();
  rmSync(path);
  return { cap, sha: h.digest('hex') };
}

for (const [name, size] of [['0-byte', 0], ['1-byte', 1], ['5 MiB', 5 * MiB], ['20 MiB', 20 * MiB + 12345]]) {
  test(`a ${name} file is saved through the service worker, byte for byte`, async ({ page, context }) => {
    test.setTimeout(120_000);
    const original = bytes(size, size + 3);
    // 0 and 1 byte would be literal caps with the CLI: upload them from the tab instead.
    const cap = size <= 1 ? await uploadFromTab(page, grid.url, original) : grid.put(original);
    expect(cap).toMatch(/^lafsr1/);
    const requests = recordRequests(context);
    await openFile(page, grid.url, cap);
    await expect(page.locator('html')).toHaveAttribute('data-delivery', 'stream');
    const download = await saveFile(page);
    expect(await download.failure()).toBeNull();
    const saved = readFileSync(await download.path());
    expect(saved.length).toBe(size);
    expect(sha(saved)).toBe(sha(original));
    await expect(page.locator('html')).toHaveAttribute('data-save-state', 'saved');
    // The save went through the worker.
    const served = requests.filter((r) => new URL(r.url()).pathname.startsWith('/lafs-stream/'));
    expect(served.length).toBeGreaterThan(0);
    await expectNoSecret(requests, cap);
  });
}

test('audio streams and seeks: the worker answers Range requests from the middle', async ({ page, context }) => {
  test.setTimeout(120_000);
  const audio = wav(200); // 17.6 MB: above the size read whole on opening
  const cap = grid.put(audio);
  const responses = [];
  context.on('response', (r) => {
    if (new URL(r.url()).pathname.startsWith('/lafs-stream/')) responses.push(r);
  });
  const requests = recordRequests(context);
  await openFile(page, grid.url, cap);
  await expect(page.locator('#file')).toHaveAttribute('data-type', 'audio/wav');
  const el = page.locator('audio#file-inline');
  await expect(el).toBeVisible();
  const duration = await el.evaluate((a) =>
    a.readyState >= 1 ? a.duration : new Promise((res, rej) => {
      a.addEventListener('loadedmetadata', () => res(a.duration), { once: true });
      a.addEventListener('error', () => rej(new Error(`media error ${a.error?.code}`)), { once: true });
    }));
  expect(duration).toBeGreaterThan(199);
  expect(duration).toBeLessThan(201);
  const now = await el.evaluate((a, t) => new Promise((res, rej) => {
    a.addEventListener('seeked', () => res(a.currentTime), { once: true });
    a.addEventListener('error', () => rej(new Error(`media error ${a.error?.code}`)), { once: true });
    a.currentTime = t;
  }), duration - 3);
  expect(now).toBeGreaterThan(duration - 4);
  await el.evaluate((a) => (a.readyState >= 3 ? null : new Promise((res) => a.addEventListener('canplay', res, { once: true }))));
  // Seeking near the end needed bytes far from the start: a 206 for a range starting there.
  const streams = await page.evaluate(() => window.lafsStreams);
  const far = streams.filter((s) => s.start > audio.length / 2);
  expect(far.length, JSON.stringify(streams)).toBeGreaterThan(0);
  const partial = responses.filter((r) => r.status() === 206);
  expect(partial.length).toBeGreaterThan(0);
  const ranges = await Promise.all(partial.map((r) => r.headerValue('content-range')));
  expect(ranges.some((h) => Number(/bytes (\d+)-/.exec(h)?.[1]) > audio.length / 2), ranges.join(', ')).toBe(true);
  expect(partial.every((r) => r.fromServiceWorker())).toBe(true);
  // The page fetched only part of the file's ciphertext, not the whole of it.
  const fetched = streams.reduce((n, s) => n + s.bytes, 0);
  console.log(`audio ${audio.length} bytes; ranges served: ${streams.map((s) => `${s.start}-${s.end} (${s.bytes} B, ${s.state})`).join(', ')}`);
  expect(fetched).toBeGreaterThan(0);
  await expectNoSecret(requests, cap);
});

test('a streamed file fits a phone-sized viewport', async ({ page }) => {
  await page.setViewportSize({ width: 360, height: 740 });
  const cap = grid.put(wav(120)); // 10.6 MB of audio, shown with a player
  await openFile(page, grid.url, cap);
  await expect(page.locator('audio#file-inline')).toBeVisible();
  await expect(page.locator('#file-status')).toContainText('verified');
  const link = page.locator('#file-download');
  await expect(link).toContainText('Save the file');
  await link.scrollIntoViewIfNeeded();
  await expect(link).toBeInViewport();
  const overflow = await page.evaluate(
    () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
  );
  expect(overflow).toBeLessThanOrEqual(0);
});

test('a Range request gets exactly its bytes; a bad one gets 416', async ({ page }) => {
  const original = bytes(20 * MiB + 777, 11);
  const cap = grid.put(original);
  await openFile(page, grid.url, cap);
  const url = await page.locator('#file-download').getAttribute('href');
  const probe = (range) => page.evaluate(async ([u, r]) => {
    const resp = await fetch(u, r ? { headers: { Range: r } } : {});
    const body = new Uint8Array(await resp.arrayBuffer());
    return { status: resp.status, range: resp.headers.get('content-range'), len: body.length, body: [...body.subarray(0, 16)], accept: resp.headers.get('accept-ranges') };
  }, [url, range]);
  const at = 13 * MiB + 5;
  let r = await probe(`bytes=${at}-${at + 99999}`);
  expect(r.status).toBe(206);
  expect(r.range).toBe(`bytes ${at}-${at + 99999}/${original.length}`);
  expect(r.len).toBe(100000);
  expect(r.body).toEqual([...original.subarray(at, at + 16)]);
  expect(r.accept).toBe('bytes');
  r = await probe('bytes=-10');
  expect(r.status).toBe(206);
  expect(r.body).toEqual([...original.subarray(original.length - 10)]);
  r = await probe(`bytes=${original.length}-`);
  expect(r.status).toBe(416);
  expect(r.range).toBe(`bytes */${original.length}`);
});

test('ciphertext altered mid-stream aborts the save and shows the integrity error', async ({ page, context }) => {
  test.setTimeout(120_000);
  const original = bytes(24 * MiB, 21);
  const cap = grid.put(original);
  // A dishonest gateway: flip one byte at 17 MiB of the ciphertext it sends (`?direct=off`: the
  // page reads through the gateway, not from the storage servers).
  const bad = 17 * MiB + 4321;
  await page.route('**/ciphertext/**', async (route) => {
    const req = route.request();
    const m = /bytes=(\d+)-(\d+)/.exec((await req.allHeaders()).range ?? '');
    if (!m || Number(m[1]) > bad || Number(m[2]) < bad) return route.continue();
    const resp = await route.fetch();
    const body = Buffer.from(await resp.body());
    body[bad - Number(m[1])] ^= 0x01;
    return route.fulfill({ response: resp, body });
  });
  await openFile(page, grid.url, cap, '?direct=off');
  await expect(page.locator('html')).toHaveAttribute('data-delivery', 'stream');
  const download = await saveFile(page);
  expect(await download.failure()).not.toBeNull();
  await expect(page.locator('#file-error')).toHaveAttribute('data-kind', 'integrity');
  await expect(page.locator('#file-error-title')).toHaveText('This file failed its integrity check');
  await expect(page.locator('#file-download')).toBeHidden();
  await expect(page.locator('html')).toHaveAttribute('data-save-state', 'error');
  const streams = await page.evaluate(() => window.lafsStreams);
  const failed = streams.find((s) => s.download);
  expect(failed.state).toBe('error');
  // Only verified bytes were delivered: everything before the damaged batch, nothing after it.
  expect(failed.bytes).toBeLessThanOrEqual(bad);
  // Nothing more comes from this file, even when asked again.
  const again = await page.evaluate(async (u) => (await fetch(u)).status, await page.locator('#file-download').getAttribute('href'));
  expect(again).toBe(500);
});

test('a seek into altered ciphertext stops the media and shows the integrity error', async ({ page }) => {
  test.setTimeout(120_000);
  const audio = wav(200);
  const cap = grid.put(audio);
  const bad = 12 * MiB + 99; // 145 s into the sound
  await page.route('**/ciphertext/**', async (route) => {
    const m = /bytes=(\d+)-(\d+)/.exec((await route.request().allHeaders()).range ?? '');
    if (!m || Number(m[1]) > bad || Number(m[2]) < bad) return route.continue();
    const resp = await route.fetch();
    const body = Buffer.from(await resp.body());
    body[bad - Number(m[1])] ^= 0x80;
    return route.fulfill({ response: resp, body });
  });
  await page.goto(`${grid.url}/?direct=off#${cap}`); // through the gateway
  // Shown, or already failed: reading ahead for the player's first request can reach the damage.
  await expect(page.locator('html')).toHaveAttribute('data-file-state', /shown|error/, { timeout: 60_000 });
  // Seek just before the damage; the player asks for a range there. (Reading ahead for the
  // player's first request may already have found the damage and removed the player.)
  await page.evaluate(() => {
    const a = document.getElementById('file-inline');
    if (a) a.currentTime = 144;
  });
  await expect(page.locator('#file-error')).toHaveAttribute('data-kind', 'integrity', { timeout: 60_000 });
  await expect(page.locator('#file-error-title')).toHaveText('This file failed its integrity check');
  await expect(page.locator('#file-view')).toBeEmpty();
  await expect(page.locator('#file-download')).toBeHidden();
  // Found while reading ahead or for the seek: either way, nothing from the damaged 4 MiB batch
  // on was delivered to the player.
  const streams = await page.evaluate(() => window.lafsStreams);
  for (const s of streams) {
    const delivered = s.start >= 12 * MiB ? s.bytes : s.start + s.bytes - 12 * MiB;
    expect(delivered, JSON.stringify(streams)).toBeLessThanOrEqual(0);
  }
});

test('without a service worker (?sw=off) a file is read into memory and saved from a Blob', async ({ page }) => {
  const original = bytes(20 * MiB, 31);
  const cap = grid.put(original);
  await openFile(page, grid.url, cap, '?sw=off');
  await expect(page.locator('html')).toHaveAttribute('data-delivery', 'memory');
  const download = await saveFile(page);
  expect(sha(readFileSync(await download.path()))).toBe(sha(original));
});

test('without a service worker a large file is loaded only when asked, and says why', async ({ page }) => {
  const original = bytes(20 * MiB, 41);
  const cap = grid.put(original);
  // A 16 MiB limit instead of 256 MiB, so that a 20 MiB file is "large".
  await page.goto(`${grid.url}/?sw=off&memory-max-mib=16#${cap}`);
  await expect(page.locator('html')).toHaveAttribute('data-file-state', 'too-large', { timeout: 60_000 });
  await expect(page.locator('#file-status')).toContainText('cannot stream it to disk here');
  await expect(page.locator('#file-status')).toContainText('?sw=off');
  await expect(page.locator('#file-download')).toBeHidden();
  await page.locator('#file-load-anyway').click();
  await expect(page.locator('html')).toHaveAttribute('data-file-state', 'shown', { timeout: 60_000 });
  await expect(page.locator('html')).toHaveAttribute('data-delivery', 'memory');
  const download = await saveFile(page);
  expect(sha(readFileSync(await download.path()))).toBe(sha(original));
});

/** Waits until `pred()` is true (polling), or fails after `ms`. */
async function until(pred, ms = 60_000) {
  const t0 = Date.now();
  while (!(await pred())) {
    if (Date.now() - t0 > ms) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 100));
  }
}

// Measured in a Chromium of its own, driven over a bare DevTools pipe (../raw-chromium.mjs):
// under Playwright, the DevTools network agent keeps copies of response bodies in the renderer,
// which would be counted as the page's memory.
test(`memory stays flat while a ${FLAT_MIB} MiB file is saved`, async () => {
  test.setTimeout(900_000);
  const size = FLAT_MIB * MiB;
  let t = performance.now();
  const { cap, sha: want } = putLarge(size, 5);
  const putSecs = (performance.now() - t) / 1000;
  const chrome = await launchRaw();
  const dlDir = mkdtempSync(join(tmpdir(), 'lafs-save-'));
  try {
    await chrome.send('Browser.setDownloadBehavior', { behavior: 'allow', downloadPath: dlDir, eventsEnabled: true });
    const tab = await openTab(chrome, `${grid.url}/#${cap}`);
    await until(async () => (await tab.evaluate('document.documentElement?.dataset.fileState')) === 'shown');
    expect(await tab.evaluate('document.documentElement.dataset.delivery')).toBe('stream');
    const { targetInfos } = await chrome.send('Target.getTargets');
    const worker = targetInfos.find((x) => x.type === 'service_worker');
    expect(worker).toBeTruthy();
    const { sessionId: workerSession } = await chrome.send('Target.attachToTarget', { targetId: worker.targetId, flatten: true });
    /** Live JS memory (heap + ArrayBuffer contents) of the page and the worker, after a full GC. */
    const live = async () => {
      let total = 0;
      for (const sid of [tab.sessionId, workerSession]) {
        await chrome.send('HeapProfiler.collectGarbage', {}, sid);
        const u = await chrome.send('Runtime.getHeapUsage', {}, sid);
        total += (u.usedSize + (u.backingStorageSize ?? 0)) / MiB;
      }
      return total;
    };
    const rendererRss = async () => (await chrome.rss()).renderer ?? 0;

    /** Saves the file once, sampling `measure()` every 250 ms: [seconds, peak]. */
    const saveOnce = async (measure) => {
      const done = chrome.waitFor((m) => m.method === 'Browser.downloadProgress' && m.params.state !== 'inProgress', 600_000);
      let peak = await measure();
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          peak = Math.max(peak, await measure());
          await new Promise((r) => setTimeout(r, 250));
        }
      })();
      const t0 = performance.now();
      await tab.evaluate("document.getElementById('file-download').click()");
      const ev = await done;
      const secs = (performance.now() - t0) / 1000;
      sampling = false;
      await sampler;
      expect(ev.params.state).toBe('completed');
      const files = readdirSync(dlDir);
      expect(files.length).toBe(1);
      const path = join(dlDir, files[0]);
      expect(statSync(path).size).toBe(size);
      expect(await shaOfFile(path)).toBe(want);
      rmSync(path);
      return [secs, peak];
    };

    // Warm up (code compiled, buffer pool filled) with a first range read through the worker.
    await tab.evaluate(`(async () => {
      const url = document.getElementById('file-download').href;
      const r = await fetch(url, { headers: { Range: 'bytes=0-${16 * MiB - 1}' } });
      return (await r.arrayBuffer()).byteLength;
    })()`);
    await new Promise((r) => setTimeout(r, 1000));
    // 1. As in use: the renderers' resident memory, garbage collected whenever V8 decides.
    const baseRss = await rendererRss();
    const [secs, peakRss] = await saveOnce(rendererRss);
    // 2. What is really held: live memory after a forced full GC at every sample.
    const baseLive = await live();
    const [, peakLive] = await saveOnce(live);
    const rssGrowth = peakRss - baseRss;
    const liveGrowth = peakLive - baseLive;
    console.log(
      `streamed save of ${FLAT_MIB} MiB: ${(size / 1e6 / secs).toFixed(1)} MB/s (lafs put: ${putSecs.toFixed(1)} s); ` +
        `renderers' RSS ${baseRss.toFixed(0)} -> peak ${peakRss.toFixed(0)} MiB (+${rssGrowth.toFixed(0)}); ` +
        `live JS memory of page + worker after GC ${baseLive.toFixed(1)} -> peak ${peakLive.toFixed(1)} MiB (+${liveGrowth.toFixed(1)})`,
    );
    // Holding the file would take at least its size. Streaming holds a bounded number of 4 MiB
    // batches whatever the size: when the disk is the slower end, the page's pipeline fills up
    // (FETCH_DEPTH batches in flight, the piece being handed over and the one prepared ahead) and
    // the worker's stream queues two more: about 32 MiB, seen on a loaded machine, plus buffer
    // pools that may still be filling. 64 MiB is over that and well under the file's 160 MiB.
    expect(liveGrowth).toBeLessThan(Math.min(64, FLAT_MIB / 2));
    expect(rssGrowth).toBeLessThan(128);
    expect(await tab.evaluate('document.documentElement.dataset.saveState')).toBe('saved');
  } finally {
    await chrome.close();
    rmSync(dlDir, { recursive: true, force: true });
  }
});
