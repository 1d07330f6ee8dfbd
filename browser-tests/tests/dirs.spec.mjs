// Directories in the web app against a real local grid (`lafs demo`, see ../grid.mjs): a
// directory made with the CLI opens from `#<dircap>`; files open; with a write cap the tab
// creates folders and uploads files that the CLI then sees; a read cap shows no write controls;
// a traversal cap shows no names; no request carries a directory cap, a file cap or a key (the
// tab talks to the storage servers directly, the gateway only lists them).
import { test, expect } from '@playwright/test';
import { writeFileSync, readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { useGrid, recordRequests, expectNoSecret as expectNoCap, openApp } from '../helpers.mjs';

const grid = useGrid();
let tmp;
let root; // the directory's write cap
const notes = 'Notes kept in a lafs directory.\n'.repeat(40);

/** `lafs <command> --node <the grid's client> ...args`: its standard output. */
const lafs = (command, ...args) => grid.cli(command, ...args);

test.beforeAll(async () => {
  test.setTimeout(120_000);
  tmp = mkdtempSync(join(tmpdir(), 'lafs-dirs-'));
  root = lafs('mkdir').toString().trim();
  const file = join(tmp, 'notes.txt');
  writeFileSync(file, notes);
  lafs('cp', file, `${root}:notes.txt`);
  lafs('mkdir', `${root}:photos`);
  const small = join(tmp, 'hello.txt');
  writeFileSync(small, 'hello');
  lafs('cp', small, `${root}:photos/hello.txt`);
});
test.afterAll(async () => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/**
 * Asserts that no request holds any of `caps`, and that requests go only where allowed: to the
 * gateway for the page's own files, the server list and verifycap endpoints, elsewhere only to
 * storage servers.
 */
async function expectNoSecret(requests, caps, { uploads = false } = {}) {
  const gateway = new URL(grid.url).origin;
  await expectNoCap(requests, caps, (url) =>
    url.origin === gateway
      ? !url.pathname.startsWith('/uri') &&
        (url.pathname === '/grid/servers' ||
          url.pathname.startsWith('/ciphertext/lafsv1') ||
          (uploads && url.pathname.startsWith('/ciphertext/uploads')) ||
          // The page's own service worker answers these (a save); no file name in them.
          (url.pathname.startsWith('/lafs-stream/') && /^\/lafs-stream\/[0-9a-f]{32}\/lafs-file(\.\w+)?$/.test(url.pathname)) ||
          /^\/[\w.-]*$/.test(url.pathname))
      : /^\/storage\/v1\//.test(url.pathname));
}

async function openDir(page, fragment, query = '') {
  await page.goto(`${grid.url}/${query}#${fragment}`);
  await expect(page.locator('html')).toHaveAttribute('data-dir-state', 'shown', { timeout: 60_000 });
}

/** Waits for the folder operation to end and asserts it succeeded (showing its message if not). */
async function opDone(page) {
  await expect(page.locator('html')).toHaveAttribute('data-dir-op', /^(done|error)$/, { timeout: 60_000 });
  const status = await page.locator('#dir-op-status').textContent();
  expect(await page.locator('html').getAttribute('data-dir-op'), status).toBe('done');
}

const names = (page) => page.locator('#dir-list li.dir-entry').evaluateAll((l) => l.map((e) => e.dataset.name ?? null));

/** Derives caps in the page (no network). */
async function derive(page, cap) {
  return page.evaluate((c) => {
    const i = window.wasmBindings.parseCap(c);
    return { read: i.readOnlyCap, traverse: i.traverseCap, kind: i.kind };
  }, cap);
}

test('a directory made with the CLI opens from #<dircap>, files open in the viewer', async ({ page }) => {
  test.setTimeout(120_000);
  const requests = recordRequests(page);
  await openDir(page, root);
  await expect(page.locator('#dir')).toHaveAttribute('data-level', 'write');
  expect(await names(page)).toEqual(['photos', 'notes.txt']);
  await expect(page.locator('#dir-list li[data-name="notes.txt"] .size')).toHaveText(`${(notes.length / 1024).toFixed(1)} KiB`);
  await expect(page.locator('#dir-tools')).toBeVisible();

  // Into the folder and back through the breadcrumb.
  await page.locator('#dir-list li[data-name="photos"] a').click();
  await expect(page.locator('html')).toHaveAttribute('data-dir-state', 'shown');
  await expect(page.locator('#dir-crumbs')).toContainText('photos');
  await expect.poll(() => names(page)).toEqual(['hello.txt']);
  await page.locator('#dir-list li[data-name="hello.txt"] a').click();
  await expect(page.locator('html')).toHaveAttribute('data-file-state', 'shown', { timeout: 60_000 });
  await expect(page.locator('#file-inline')).toHaveText('hello');
  await expect(page.locator('#dir')).toBeHidden();
  await expect(page.locator('#dir-back')).toBeVisible();
  await page.locator('#dir-back-link').click();
  await expect(page.locator('html')).toHaveAttribute('data-dir-state', 'shown');
  await expect.poll(() => names(page)).toEqual(['hello.txt']);
  await page.locator('#dir-crumbs a').first().click();
  await expect.poll(() => names(page)).toEqual(['photos', 'notes.txt']);

  await page.locator('#dir-list li[data-name="notes.txt"] a').click();
  await expect(page.locator('#file-inline')).toHaveText(notes, { useInnerText: false, timeout: 60_000 });

  const d = await derive(page, root);
  const fileCaps = JSON.parse(lafs('ls', '--json', root).toString());
  await expectNoSecret(requests, [root, d.read, d.traverse, ...Object.values(fileCaps)]);
  // The listing came from the storage servers, not from the gateway's directory API.
  expect(requests.some((r) => r.url().endsWith('/grid/servers'))).toBe(true);
  expect(requests.some((r) => /\/storage\/v1\/mutable\/[a-z2-7]+\/read$/.test(r.url()))).toBe(true);
});

test('a copy of the app on another host lists a directory through ?gateway= and opens its files', async ({ page }) => {
  test.setTimeout(120_000);
  const host = process.env.LAFS_WEB_URL; // web/dist on another origin than the gateway's
  const q = `?gateway=${encodeURIComponent(grid.url)}`;
  const requests = recordRequests(page);
  await page.goto(`${host}/${q}#${root}`);
  await expect(page.locator('html')).toHaveAttribute('data-dir-state', 'shown', { timeout: 60_000 });
  expect(await names(page)).toEqual(['photos', 'notes.txt']);
  await expect(page.locator('#dir-list li[data-name="notes.txt"] .size')).toHaveText(`${(notes.length / 1024).toFixed(1)} KiB`);
  await page.locator('#dir-list li[data-name="notes.txt"] a').click();
  await expect(page.locator('#file-inline')).toHaveText(notes, { useInnerText: false, timeout: 60_000 });
  expect(new URL(page.url()).search).toBe(q);
  // The app's files come from the static host; everything else goes where it does on the gateway.
  const others = requests.filter((r) => new URL(r.url()).origin !== new URL(host).origin);
  await expectNoSecret(others, [root]);
});

test('with a write cap and ?direct=on the tab creates a folder and encodes a file itself that the CLI sees', async ({ page }) => {
  test.setTimeout(180_000);
  const requests = recordRequests(page);
  await openDir(page, root, '?direct=on');
  await page.locator('#dir-new-folder').click();
  await page.locator('#dir-mkdir-name').fill('made in the tab');
  await page.locator('#dir-mkdir-form button[type=submit]').click();
  await opDone(page);
  await expect.poll(() => names(page)).toEqual(['made in the tab', 'photos', 'notes.txt']);

  const content = Buffer.from('uploaded from the browser, '.repeat(400));
  await page.locator('#dir-list li[data-name="made in the tab"] a').click();
  await expect(page.locator('#dir-crumbs')).toContainText('made in the tab');
  await expect(page.locator('html')).toHaveAttribute('data-dir-state', 'shown');
  await page.locator('#dir-upload-input').setInputFiles({ name: 'up.txt', mimeType: 'text/plain', buffer: content });
  await opDone(page);
  await expect.poll(() => names(page)).toEqual(['up.txt']);
  await expect(page.locator('#dir-list li[data-name="up.txt"] .size')).toHaveText(`${(content.length / 1024).toFixed(1)} KiB`);

  // A file larger than one piece handed to the uploader (4 MiB) and than one segment.
  const big = Buffer.alloc((5 << 20) + 123);
  for (let i = 0; i < big.length; i++) big[i] = (i * 31 + (i >> 13)) & 0xff;
  await page.locator('#dir-upload-input').setInputFiles({ name: 'big.bin', mimeType: 'application/octet-stream', buffer: big });
  await opDone(page);
  await expect.poll(() => names(page)).toEqual(['big.bin', 'up.txt']);
  await expect(page.locator('#dir-list li[data-name="big.bin"] .size')).toHaveText('5.0 MiB');

  // Opened from the listing, a file keeps its name for saving (the name is in the fragment).
  await page.locator('#dir-list li[data-name="big.bin"] a').click();
  await expect(page.locator('html')).toHaveAttribute('data-file-state', 'shown', { timeout: 60_000 });
  await expect(page.locator('#file-download')).toContainText('Save big.bin');
  const [download] = await Promise.all([page.waitForEvent('download'), page.locator('#file-download').click()]);
  expect(download.suggestedFilename()).toBe('big.bin');
  expect(readFileSync(await download.path()).equals(big)).toBe(true);
  await page.goBack();
  await expect(page.locator('html')).toHaveAttribute('data-dir-state', 'shown');

  // The CLI sees them.
  const ls = lafs('ls', root).toString().split('\n').filter(Boolean);
  expect(ls).toContain('made in the tab/');
  expect(lafs('ls', `${root}:made in the tab`).toString().trim().split('\n')).toEqual(['big.bin', 'up.txt']);
  const out = join(tmp, 'got.txt');
  lafs('cp', `${root}:made in the tab/up.txt`, out);
  expect(readFileSync(out).equals(content)).toBe(true);
  const outBig = join(tmp, 'got.bin');
  lafs('cp', `${root}:made in the tab/big.bin`, outBig);
  expect(readFileSync(outBig).equals(big)).toBe(true);

  const d = await derive(page, root);
  const sub = JSON.parse(lafs('ls', '--json', `${root}:made in the tab`).toString());
  const top = JSON.parse(lafs('ls', '--json', root).toString());
  await expectNoSecret(requests, [root, d.read, d.traverse, ...Object.values(sub), ...Object.values(top)]);
  // Writes went to the storage servers, signed.
  const writes = requests.filter((r) => r.method() !== 'GET' && r.url().includes('/storage/v1/'));
  expect(writes.some((r) => /\/mutable\/[a-z2-7]+\/write$/.test(r.url()))).toBe(true);
  expect(writes.some((r) => /\/(upload\/[^/]+|immutable\/[a-z2-7]+)\/\d+(\?.*)?$/.test(r.url()))).toBe(true);
  for (const w of writes.filter((r) => r.method() !== 'OPTIONS' && !r.url().endsWith('/read'))) {
    expect(Object.keys(await w.allHeaders())).toContain('lafs-signature');
  }
  // Nothing of the files went to the gateway.
  expect(requests.filter((r) => new URL(r.url()).pathname.startsWith('/ciphertext/uploads'))).toEqual([]);
});

test('by default a file uploaded into a folder is encoded by the gateway and linked by the tab', async ({ page }) => {
  test.setTimeout(180_000);
  // A directory of its own: the tests below expect the shared one as it is.
  const root = lafs('mkdir').toString().trim();
  const requests = recordRequests(page);
  await openDir(page, root);
  await page.locator('#dir-new-folder').click();
  await page.locator('#dir-mkdir-name').fill('through the gateway');
  await page.locator('#dir-mkdir-form button[type=submit]').click();
  await opDone(page);
  await page.locator('#dir-list li[data-name="through the gateway"] a').click();
  await expect(page.locator('#dir-crumbs')).toContainText('through the gateway');
  await expect(page.locator('html')).toHaveAttribute('data-dir-state', 'shown');
  // Larger than one chunk of the upload session (8 MiB), not a multiple of a segment.
  const big = Buffer.alloc((9 << 20) + 4321);
  for (let i = 0; i < big.length; i++) big[i] = (i * 17 + (i >> 11)) & 0xff;
  await page.locator('#dir-upload-input').setInputFiles({ name: 'via-gateway.bin', mimeType: 'application/octet-stream', buffer: big });
  await opDone(page);
  await expect.poll(() => names(page)).toEqual(['via-gateway.bin']);
  await expect(page.locator('#dir-list li[data-name="via-gateway.bin"] .size')).toHaveText('9.0 MiB');
  // A tiny file takes the same way (the gateway makes it a literal cap or a one-segment file).
  await page.locator('#dir-upload-input').setInputFiles({ name: 'tiny.txt', mimeType: 'text/plain', buffer: Buffer.from('hi') });
  await opDone(page);
  await expect.poll(() => names(page)).toEqual(['tiny.txt', 'via-gateway.bin']);

  const out = join(tmp, 'via-gateway.bin');
  lafs('cp', `${root}:through the gateway/via-gateway.bin`, out);
  expect(readFileSync(out).equals(big)).toBe(true);
  const outTiny = join(tmp, 'tiny.txt');
  lafs('cp', `${root}:through the gateway/tiny.txt`, outTiny);
  expect(readFileSync(outTiny).toString()).toBe('hi');

  // The ciphertext went to the upload session in chunks; no cap or key in any request; the
  // folder itself was changed by the tab with signed writes to the storage servers.
  const sessions = requests.filter((r) => new URL(r.url()).pathname.startsWith('/ciphertext/uploads'));
  expect(sessions.filter((r) => r.method() === 'PUT').length).toBeGreaterThanOrEqual(2);
  const d = await derive(page, root);
  const sub = JSON.parse(lafs('ls', '--json', `${root}:through the gateway`).toString());
  const top = JSON.parse(lafs('ls', '--json', root).toString());
  await expectNoSecret(requests, [root, d.read, d.traverse, ...Object.values(sub), ...Object.values(top)], { uploads: true });
  const writes = requests.filter((r) => r.method() === 'POST' && /\/mutable\/[a-z2-7]+\/write$/.test(r.url()));
  expect(writes.length).toBeGreaterThan(0);
  for (const w of writes) expect(Object.keys(await w.allHeaders())).toContain('lafs-signature');
  expect(requests.some((r) => /\/storage\/v1\/(upload|immutable)\//.test(new URL(r.url()).pathname) && r.method() !== 'GET')).toBe(false);
});

test('a folder upload cut off by the gateway says so and leaves the folder as it was', async ({ page }) => {
  test.setTimeout(120_000);
  const dir = lafs('mkdir').toString().trim();
  await openDir(page, dir);
  // After the first chunk (8 MiB), nothing of the upload session reaches the gateway any more.
  await page.route(
    (u) => u.pathname.startsWith('/ciphertext/uploads') && !u.search.includes('offset=0') && !u.search.includes('selection_index'),
    (route) => route.abort('connectionrefused'),
  );
  const big = Buffer.alloc((8 << 20) + 1000, 7);
  await page.locator('#dir-upload-input').setInputFiles({ name: 'cut.bin', mimeType: 'application/octet-stream', buffer: big });
  await expect(page.locator('html')).toHaveAttribute('data-dir-op', 'error', { timeout: 60_000 });
  await expect(page.locator('#dir-op-status')).toHaveText(/^Upload failed: The gateway stopped answering after 8\.0 MiB had been sent/);
  await expect(page.locator('#dir-progress')).toBeHidden();
  expect(lafs('ls', dir).toString().trim()).toBe('');
  await expect.poll(() => names(page)).toEqual([]);
});

test('a read-only dircap shows the listing and no write controls', async ({ page }) => {
  await openApp(page, grid.url);
  const d = await derive(page, root);
  expect(d.read).toMatch(/^lafsdr1/);
  await openDir(page, d.read);
  await expect(page.locator('#dir')).toHaveAttribute('data-level', 'read');
  expect(await names(page)).toEqual(['made in the tab', 'photos', 'notes.txt']);
  await expect(page.locator('#dir-tools')).toBeHidden();
  await expect(page.locator('#dir-notice')).toContainText('Read-only');
  await expect(page.locator('#dir-share-read')).toBeHidden();
  // Folders open read-only too.
  await page.locator('#dir-list li[data-name="photos"] a').click();
  await expect.poll(() => names(page)).toEqual(['hello.txt']);
  await expect(page.locator('#dir-tools')).toBeHidden();
});

test('a traversal cap link shows the structure and no names', async ({ page }) => {
  await openApp(page, grid.url);
  const d = await derive(page, root);
  expect(d.traverse).toMatch(/^lafsdt1/);
  const requests = recordRequests(page);
  await openDir(page, d.traverse);
  await expect(page.locator('#dir')).toHaveAttribute('data-level', 'traverse');
  await expect(page.locator('#dir-list li.dir-entry')).toHaveCount(3);
  expect(await names(page)).toEqual([null, null, null]);
  const text = await page.locator('#dir').innerText();
  for (const n of ['notes.txt', 'photos', 'made in the tab']) expect(text).not.toContain(n);
  await expect(page.locator('#dir-tools')).toBeHidden();
  await expect(page.locator('#dir-notice')).toContainText('only the structure');
  // Each entry is a traversal cap (folders) or a verifycap (files).
  const caps = await page.locator('#dir-list .child-cap').allTextContents();
  expect(caps.filter((c) => c.startsWith('lafsdt1'))).toHaveLength(2);
  expect(caps.filter((c) => c.startsWith('lafsv1'))).toHaveLength(1);
  // A child folder opens at traversal level.
  await page.locator('#dir-list li[data-kind="dir"] a').first().click();
  await expect(page.locator('html')).toHaveAttribute('data-dir-state', 'shown');
  await expect(page.locator('#dir')).toHaveAttribute('data-level', 'traverse');
  await expectNoSecret(requests, [root, d.read, d.traverse]);
});

test('share links give less authority, and the view fits a phone', async ({ page }) => {
  await page.setViewportSize({ width: 360, height: 740 });
  await openDir(page, root);
  const fits = () => page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
  expect(await fits()).toBe(true);

  // Read-only link of a folder below the root: the root's read cap and the same path.
  await page.locator('#dir-list li[data-name="photos"] a').click();
  await expect.poll(() => names(page)).toEqual(['hello.txt']);
  await page.locator('#dir-share-read').click();
  const readLink = await page.locator('#dir-share-link').inputValue();
  expect(readLink).toMatch(/#lafsdr1[a-z0-9]+&path=photos$/);
  expect(await fits()).toBe(true);
  await page.locator('#dir-share-traverse').click();
  const traverseLink = await page.locator('#dir-share-link').inputValue();
  expect(traverseLink).toMatch(/#lafsdt1[a-z0-9]+$/);

  await page.goto(readLink);
  await expect(page.locator('html')).toHaveAttribute('data-dir-state', 'shown', { timeout: 60_000 });
  await expect(page.locator('#dir')).toHaveAttribute('data-level', 'read');
  await expect.poll(() => names(page)).toEqual(['hello.txt']);
  await expect(page.locator('#dir-tools')).toBeHidden();
  expect(await fits()).toBe(true);

  await page.goto(traverseLink);
  await expect(page.locator('#dir')).toHaveAttribute('data-level', 'traverse', { timeout: 60_000 });
  // photos holds one literal file: nothing on the grid to walk to, and no name shown.
  await expect(page.locator('#dir-status')).toHaveText('1 item in this folder.');
  await expect(page.locator('#dir-list li.dir-entry')).toHaveCount(0);
  await expect(page.locator('#dir')).not.toContainText('hello.txt');
  expect(await fits()).toBe(true);
});

test('a mutable file in a folder is read by the tab and shown in the listing', async ({ page }) => {
  // A mutable file made through the gateway's API (by this test, not by the page), linked with the CLI.
  const text = 'first version of a mutable file\n';
  const resp = await fetch(`${grid.url}/uri?t=mutable`, { method: 'POST', body: text });
  expect(resp.status).toBe(200);
  const writeCap = (await resp.text()).trim();
  expect(writeCap).toMatch(/^lafsmw1/);
  lafs('cp', writeCap, `${root}:log.txt`);

  const requests = recordRequests(page);
  await openDir(page, root);
  const entry = page.locator('#dir-list li[data-name="log.txt"]');
  await expect(entry.locator('.tag')).toHaveText('mutable');
  await entry.locator('a').click();
  await expect(page.locator('#dir-file pre')).toHaveText(text, { useInnerText: false, timeout: 60_000 });
  const d = await derive(page, root);
  const w = await derive(page, writeCap);
  await expectNoSecret(requests, [root, d.read, d.traverse, writeCap, w.read]);
});
