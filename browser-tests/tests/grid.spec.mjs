// The web app against a real local grid (`lafs demo`, see ../grid.mjs): files uploaded with the
// CLI open from a share link, verified and decrypted in the tab; tampering is caught; files
// uploaded from the tab come back byte for byte through `lafs get`; no request carries a readcap.
import { test, expect } from '@playwright/test';
import { readFileSync } from 'node:fs';
import {
  bytes, sha, base32, useGrid, recordRequests, expectNoSecret, openApp, uploadFromTab,
  openAndSave, saveFile,
} from '../helpers.mjs';

const grid = useGrid();

for (const [name, size] of [['0 bytes', 0], ['1 byte', 1], ['100 KiB', 100 << 10], ['5 MiB', 5 << 20]]) {
  test(`a ${name} file uploaded with the CLI opens from its share link, byte for byte`, async ({ page }) => {
    test.setTimeout(120_000);
    const original = bytes(size, size + 7);
    const cap = grid.put(original);
    const requests = recordRequests(page);
    const saved = await openAndSave(page, grid.url, cap);
    expect(saved.length).toBe(original.length);
    expect(sha(saved)).toBe(sha(original));
    await expectNoSecret(requests, cap);
    if (cap.startsWith('lafsr1')) {
      // Through the gateway's verifycap endpoint by default (`?direct=on` reads the storage
      // servers: direct.spec.mjs).
      expect(requests.some((r) => new URL(r.url()).pathname.startsWith('/ciphertext/'))).toBe(true);
      await expect(page.locator('html')).toHaveAttribute('data-source', 'gateway');
      await expect(page.locator('html')).toHaveAttribute('data-crypto', 'webcrypto');
    }
  });
}

test('a text file is shown inline', async ({ page }) => {
  const text = 'Hello from the grid.\n'.repeat(200);
  const cap = grid.put(Buffer.from(text));
  await page.goto(`${grid.url}/#${cap}`);
  await expect(page.locator('#file-inline')).toHaveText(text.trimEnd() + '\n', { useInnerText: false });
  await expect(page.locator('#file')).toHaveAttribute('data-type', 'text/plain');
});

test('an image is shown inline', async ({ page }) => {
  // A 1×1 PNG.
  const png = Buffer.from(
    'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==',
    'base64',
  );
  const cap = grid.put(Buffer.concat([png, Buffer.alloc(100)]));
  await page.goto(`${grid.url}/#${cap}`);
  await expect(page.locator('#file')).toHaveAttribute('data-type', 'image/png');
  await expect(page.locator('img#file-inline')).toBeVisible();
  expect(await page.locator('img#file-inline').evaluate((i) => i.complete && i.naturalWidth)).toBe(1);
});

test('a PDF is shown inline, from the verified bytes', async ({ page }) => {
  // A one-page PDF (objects, xref and trailer), then padding past the literal-cap size.
  const body = [
    '%PDF-1.4',
    '1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj',
    '2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj',
    '3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >> endobj',
  ].join('\n') + '\n';
  const xref = body.length;
  const pdf = Buffer.from(`${body}xref\n0 4\ntrailer << /Size 4 /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n${' '.repeat(4000)}`);
  const cap = grid.put(pdf);
  await page.goto(`${grid.url}/#${cap}`);
  await expect(page.locator('#file')).toHaveAttribute('data-type', 'application/pdf');
  const frame = page.locator('iframe#file-inline');
  await expect(frame).toBeVisible();
  await expect(page.locator('#file-download')).toContainText('application/pdf');
  // What the frame shows is exactly the file.
  const shown = await frame.evaluate(async (f) => [...new Uint8Array(await (await fetch(f.src)).arrayBuffer())]);
  expect(sha(Buffer.from(shown))).toBe(sha(pdf));
});

test('a literal cap shows its content without any network request', async ({ page }) => {
  await openApp(page, grid.url);
  const cap = grid.put(Buffer.from('tiny'));
  expect(cap).toMatch(/^lafsl1/);
  const requests = recordRequests(page);
  await page.evaluate((c) => { location.hash = c; }, cap);
  await expect(page.locator('#file-inline')).toHaveText('tiny');
  expect(requests.map((r) => r.url())).toEqual([]);
});

test('ciphertext altered on the way is refused, never shown', async ({ page }) => {
  const original = bytes(3 << 20, 99);
  const cap = grid.put(original);
  // A dishonest gateway: flip one byte of the ciphertext it sends. (`?direct=off`: the page
  // reads through the gateway, not from the storage servers; direct.spec.mjs has the servers.)
  await page.route('**/ciphertext/**', async (route) => {
    const url = new URL(route.request().url());
    const resp = await route.fetch();
    if (url.search !== '') return route.fulfill({ response: resp });
    const body = Buffer.from(await resp.body());
    body[Math.min(body.length - 1, 1_500_000)] ^= 0x01;
    return route.fulfill({ response: resp, body });
  });
  await page.goto(`${grid.url}/?direct=off#${cap}`);
  await expect(page.locator('#file-error')).toHaveAttribute('data-kind', 'integrity', { timeout: 60_000 });
  await expect(page.locator('#file-error-title')).toHaveText('This file failed its integrity check');
  await expect(page.locator('#file-download')).toBeHidden();
  await expect(page.locator('#file-view')).toBeEmpty();
});

test('a wrong UEB (another file\'s) is refused', async ({ page }) => {
  const a = grid.put(bytes(5000, 1));
  const b = grid.put(bytes(5000, 2));
  await page.route('**/ciphertext/**', async (route) => {
    const url = new URL(route.request().url());
    if (url.searchParams.get('t') !== 'ueb') return route.continue();
    // Answer the UEB of file b for file a.
    const other = await page.evaluate((c) => window.wasmBindings.parseCap(c).verifyCap, b);
    const resp = await route.fetch({ url: `${url.origin}/ciphertext/${other}?t=ueb` });
    return route.fulfill({ response: resp });
  });
  await page.goto(`${grid.url}/?direct=off#${a}`); // the gateway's UEB, not the servers'
  await expect(page.locator('#file-error')).toHaveAttribute('data-kind', 'integrity', { timeout: 60_000 });
});

test('shares tampered on disk: the page shows an error, never wrong content', async ({ page }) => {
  const original = bytes(200_000, 5);
  const cap = grid.put(original);
  const si = await (async () => {
    await openApp(page, grid.url);
    return page.evaluate((c) => window.wasmBindings.parseCap(c).storageIndex, cap);
  })();
  // Shares are filed under the storage index in base32 (DIR/storage-NN/storage/shares/..).
  // Flip a byte in the first block of every share, so that no k shares are intact.
  const dirName = base32(Buffer.from(si, 'hex'));
  const shares = grid.shareFiles().filter((p) => p.includes(`/${dirName}/`));
  expect(shares.length).toBeGreaterThanOrEqual(3);
  for (const p of shares) {
    const b = grid.read(p);
    b[200] ^= 0xff;
    grid.write(p, b);
  }
  await page.goto(`${grid.url}/#${cap}`);
  await expect(page.locator('html')).toHaveAttribute('data-file-state', 'error', { timeout: 60_000 });
  await expect(page.locator('#file-error')).toBeVisible();
  await expect(page.locator('#file-download')).toBeHidden();
});

test('the wasm API streams byte ranges from the storage servers and uploads without the gateway', async ({ page }) => {
  test.setTimeout(120_000);
  const original = bytes((3 << 20) + 777, 31);
  const cap = grid.put(original);
  const requests = recordRequests(page);
  await openApp(page, grid.url);
  // Reads a ReadableStream of `file.stream(start, end)` whole in the page: its SHA-256 and size.
  const got = await page.evaluate(async ({ cap, ranges }) => {
    const hex = (b) => [...new Uint8Array(b)].map((x) => x.toString(16).padStart(2, '0')).join('');
    const g = await window.wasmBindings.LafsGrid.connect(location.origin);
    const f = await g.openFile(cap);
    const out = { size: f.size, crypto: f.crypto, ranges: [] };
    for (const [start, end] of ranges) {
      const reader = f.stream(start, end ?? undefined).getReader();
      const parts = [];
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        if (!(value instanceof Uint8Array)) throw new Error('a piece is not a Uint8Array');
        parts.push(value);
      }
      const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let o = 0;
      for (const p of parts) { all.set(p, o); o += p.length; }
      out.ranges.push({ len: all.length, sha: hex(await crypto.subtle.digest('SHA-256', all)) });
    }
    // Offsets that are not byte offsets are refused.
    try { f.stream(-1); out.bad = 'accepted'; } catch (e) { out.bad = e.code; }
    return out;
  }, { cap, ranges: [[0, null], [1_000_000, 2_500_000], [7, 1_100_003], [original.length - 10, original.length + 99], [5, 5]] });
  expect(got.size).toBe(original.length);
  // Decrypted by WebCrypto (checked against lafs' AES-CTR when the file was opened).
  expect(got.crypto).toBe('webcrypto');
  expect(got.ranges).toEqual([
    { len: original.length, sha: sha(original) },
    { len: 1_500_000, sha: sha(original.subarray(1_000_000, 2_500_000)) },
    { len: 1_099_996, sha: sha(original.subarray(7, 1_100_003)) },
    { len: 10, sha: sha(original.subarray(original.length - 10)) },
    { len: 0, sha: sha(Buffer.alloc(0)) },
  ]);
  expect(got.bad).toBe('bad-range');

  // An upload encoded in the tab, shares straight to the storage servers.
  const data = bytes((1 << 20) + 5, 32);
  const upCap = await page.evaluate(async (arr) => {
    const g = await window.wasmBindings.LafsGrid.connect(location.origin);
    const up = g.startFileUpload();
    const bytes = new Uint8Array(arr);
    await up.write(bytes.subarray(0, 300_000));
    await up.write(bytes.subarray(300_000));
    return up.finish();
  }, [...data]);
  expect(sha(grid.get(upCap))).toBe(sha(data));
  // Neither went through the gateway's file endpoints, and no request holds a cap.
  expect(requests.some((r) => /\/ciphertext\/|\/uri/.test(new URL(r.url()).pathname))).toBe(false);
  expect(requests.some((r) => /\/storage\/v1\//.test(new URL(r.url()).pathname))).toBe(true);
  await expectNoSecret(requests, [cap, upCap]);
});

test('a stream of the wasm API errors on shares tampered on disk, delivering nothing of them', async ({ page }) => {
  const original = bytes(300_000, 33);
  const cap = grid.put(original);
  await openApp(page, grid.url);
  const si = await page.evaluate((c) => window.wasmBindings.parseCap(c).storageIndex, cap);
  const dirName = base32(Buffer.from(si, 'hex'));
  for (const p of grid.shareFiles().filter((x) => x.includes(`/${dirName}/`))) {
    const b = grid.read(p);
    b[200] ^= 0xff;
    grid.write(p, b);
  }
  const r = await page.evaluate(async (c) => {
    const g = await window.wasmBindings.LafsGrid.connect(location.origin);
    const f = await g.openFile(c);
    const reader = f.stream(0).getReader();
    let delivered = 0;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return { delivered, error: null };
        delivered += value.length;
      }
    } catch (e) {
      return { delivered, error: e.code ?? String(e) };
    }
  }, cap);
  expect(r).toEqual({ delivered: 0, error: 'integrity' });
});

test('a file uploaded from the tab comes back byte for byte through lafs get', async ({ page }) => {
  test.setTimeout(120_000);
  const original = bytes(3 << 20, 42);
  const requests = recordRequests(page);
  const cap = await uploadFromTab(page, grid.url, original);
  expect(cap).toMatch(/^lafsr1/);
  const got = grid.get(cap);
  expect(sha(got)).toBe(sha(original));
  await expectNoSecret(requests, cap);
  // The link opens in the page too.
  const saved = await openAndSave(page, grid.url, cap);
  expect(sha(saved)).toBe(sha(original));
});

test('with ?direct=on the upload box encodes in the tab and the gateway carries no file data', async ({ page }) => {
  test.setTimeout(120_000);
  // More than one piece read from the file (8 MiB) and not a multiple of a segment.
  const original = bytes((9 << 20) + 99, 43);
  const requests = recordRequests(page);
  const cap = await uploadFromTab(page, grid.url, original, '?direct=on');
  expect(cap).toMatch(/^lafsr1/);
  expect(sha(grid.get(cap))).toBe(sha(original));
  expect(await page.evaluate(() => window.lafsTimings.upload.via)).toBe('storage-servers');
  const paths = requests.map((r) => [r.method(), new URL(r.url()).pathname]);
  expect(paths.filter(([, p]) => p.startsWith('/ciphertext') || p.startsWith('/uri'))).toEqual([]);
  const writes = requests.filter((r) => r.method() !== 'GET' && r.method() !== 'OPTIONS' && r.url().includes('/storage/v1/'));
  expect(writes.length).toBeGreaterThan(0);
  for (const w of writes) expect(Object.keys(await w.allHeaders())).toContain('lafs-signature');
  await expectNoSecret(requests, cap);
  // A tiny file becomes a literal cap: no request at all to store it.
  const tiny = await uploadFromTab(page, grid.url, Buffer.from('hi'), '?direct=on');
  expect(tiny).toMatch(/^lafsl1/);
  expect(grid.get(tiny).toString()).toBe('hi');
});

test('a copy of the app on another host reads and uploads through the ?gateway= of its links', async ({ page }) => {
  test.setTimeout(120_000);
  // web/dist on the static server of the global setup: another origin than the gateway's.
  const host = process.env.LAFS_WEB_URL;
  const hosts = [new URL(host).origin, new URL(grid.url).origin];
  expect(hosts[0]).not.toBe(hosts[1]);
  const q = `?gateway=${encodeURIComponent(grid.url)}`;
  const original = bytes((1 << 20) + 17, 93);
  const cap = grid.put(original);
  const requests = recordRequests(page);
  const saved = await openAndSave(page, host, cap, q);
  expect(sha(saved)).toBe(sha(original));

  const small = original.subarray(0, 200_000);
  const uploaded = await uploadFromTab(page, host, small, q);
  expect(sha(grid.get(uploaded))).toBe(sha(small));
  // The link it shows opens on the same copy and reads from the same gateway.
  expect(await page.locator('#upload-link').inputValue()).toBe(`${host}/${q}#${uploaded}&name=f.bin`);
  // Requests go to the static host (the app) and the gateway only, and carry no cap.
  await expectNoSecret(requests, [cap, uploaded], (u) => hosts.includes(u.origin));
  expect(requests.some((r) => new URL(r.url()).origin === hosts[1])).toBe(true);
});

test('a self-contained link (&grid=<introducer>) opens on a static copy with no gateway at all', async ({ page }) => {
  test.setTimeout(120_000);
  const host = process.env.LAFS_WEB_URL;
  const gateway = new URL(grid.url).origin;
  expect(grid.introducer).toMatch(/^ws:\/\//);
  const introducer = new URL(grid.introducer.replace(/^ws:/, 'http:')).origin;
  const g = `&grid=${encodeURIComponent(grid.introducer)}`;
  const original = bytes((3 << 20) + 7, 94);
  const cap = grid.put(original);
  const requests = recordRequests(page);

  // A file: read from the storage servers the introducer lists, saved under the link's name.
  await page.goto(`${host}/#${cap}${g}&name=x.bin`);
  await expect(page.locator('html')).toHaveAttribute('data-file-state', 'shown', { timeout: 60_000 });
  await expect(page.locator('html')).toHaveAttribute('data-source', 'storage-servers');
  const download = await saveFile(page);
  expect(download.suggestedFilename()).toBe('x.bin');
  expect(sha(readFileSync(await download.path()))).toBe(sha(original));

  // A folder: listed, a file opened from it (the link keeps the grid), a file uploaded into it
  // (encoded in the tab) that the CLI then reads.
  const dir = grid.cli('mkdir').toString().trim();
  grid.cli('ln', cap, `${dir}:in-folder.bin`);
  await page.goto(`${host}/#${dir}${g}`);
  await expect(page.locator('html')).toHaveAttribute('data-dir-state', 'shown', { timeout: 60_000 });
  await page.locator('#dir-list li[data-name="in-folder.bin"] a').click();
  await expect(page.locator('html')).toHaveAttribute('data-file-state', 'shown', { timeout: 60_000 });
  expect(page.url()).toContain(g);
  await page.goBack();
  await expect(page.locator('html')).toHaveAttribute('data-dir-state', 'shown');
  const small = bytes(300_000, 95);
  await page.locator('#dir-upload-input').setInputFiles({ name: 'added.bin', mimeType: 'application/octet-stream', buffer: small });
  await expect(page.locator('html')).toHaveAttribute('data-dir-op', /^(done|error)$/, { timeout: 60_000 });
  expect(await page.locator('html').getAttribute('data-dir-op'), await page.locator('#dir-op-status').innerText()).toBe('done');
  const out = grid.cli('ls', '--json', dir).toString();
  expect(sha(grid.get(JSON.parse(out)['added.bin']))).toBe(sha(small));

  // A grid that is not an address: a clear error, nothing fetched.
  await page.goto(`${host}/#${cap}&grid=nonsense`);
  await expect(page.locator('html')).toHaveAttribute('data-file-state', 'error', { timeout: 60_000 });
  await expect(page.locator('#file-error')).toContainText('the grid address "nonsense" in this link is not a URL');

  // Nothing went to the gateway; the introducer was asked for its list; no request holds a cap.
  expect(requests.filter((r) => new URL(r.url()).origin === gateway).map((r) => r.url())).toEqual([]);
  expect(requests.some((r) => r.url() === `${introducer}/v1/servers`)).toBe(true);
  await expectNoSecret(requests, [cap, dir], () => true);
});

test('a link whose ?gateway= is not an http(s) URL says so', async ({ page }) => {
  const cap = grid.put(bytes(1000, 5));
  await page.goto(`${process.env.LAFS_WEB_URL}/?gateway=javascript:alert(1)#${cap}`);
  await expect(page.locator('html')).toHaveAttribute('data-file-state', 'error', { timeout: 60_000 });
  await expect(page.locator('#file-error-message')).toContainText('is not an http or https URL');
});

test('the pure wasm AES path (?crypto=wasm) downloads and uploads the same bytes', async ({ page }) => {
  test.setTimeout(120_000);
  const original = bytes((2 << 20) + 1234, 77);
  const cap = grid.put(original);
  const saved = await openAndSave(page, grid.url, cap, '?crypto=wasm');
  await expect(page.locator('html')).toHaveAttribute('data-crypto', 'wasm');
  expect(sha(saved)).toBe(sha(original));

  const uploaded = await uploadFromTab(page, grid.url, original, '?crypto=wasm');
  await expect(page.locator('html')).toHaveAttribute('data-crypto', 'wasm');
  expect(sha(grid.get(uploaded))).toBe(sha(original));
});
