// Throughput of the web app against a local grid, next to the CLI on the same grid. Runs only with
// LAFS_BENCH=1 (e.g. `LAFS_BENCH=1 LAFS_BENCH_MIB=64 npx playwright test bench`); prints figures.
import { test, expect } from '@playwright/test';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGrid } from '../grid.mjs';

test.skip(!process.env.LAFS_BENCH, 'benchmark: set LAFS_BENCH=1 to run');

const MIB = Number(process.env.LAFS_BENCH_MIB ?? 32);
const sha = (b) => createHash('sha256').update(b).digest('hex');
const rate = (bytes, ms) => `${((bytes / 1e6) / (ms / 1000)).toFixed(1)} MB/s`;

let grid;
test.beforeAll(async () => {
  test.setTimeout(600_000);
  grid = await startGrid();
});
test.afterAll(async () => {
  await grid?.stop();
});

test(`throughput, ${MIB} MiB file`, async ({ page }) => {
  test.setTimeout(600_000);
  const original = randomBytes(MIB << 20);
  const figures = [];
  // setInputFiles takes large files by path only.
  const inputFile = join(tmpdir(), `lafs-bench-${process.pid}.bin`);
  writeFileSync(inputFile, original);

  let t = performance.now();
  const cap = grid.put(original);
  figures.push(['lafs put --node (CLI, native)', rate(original.length, performance.now() - t)]);
  t = performance.now();
  const got = grid.get(cap);
  figures.push(['lafs get --node (CLI, native)', rate(original.length, performance.now() - t)]);
  expect(sha(got)).toBe(sha(original));

  await page.goto(`${grid.url}/`);
  await expect(page.locator('html')).toHaveAttribute('data-lafs-ready', 'true');
  t = performance.now();
  await page.evaluate((c) => { location.hash = c; }, cap);
  await expect(page.locator('html')).toHaveAttribute('data-file-state', 'shown', { timeout: 600_000 });
  figures.push(['browser: download + verify + decrypt (seen by the test)', rate(original.length, performance.now() - t)]);
  const dl = await page.evaluate(() => window.lafsTimings.download);
  figures.push(['browser: download + verify + decrypt (in the page)', rate(dl.bytes, dl.ms)]);
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.locator('#file-download').click(),
  ]);
  expect(sha(readFileSync(await download.path()))).toBe(sha(original));

  for (const mode of ['webcrypto', 'wasm']) {
    await page.goto(`${grid.url}/${mode === 'wasm' ? '?crypto=wasm' : ''}`);
    await expect(page.locator('html')).toHaveAttribute('data-lafs-ready', 'true');
    await page.evaluate((c) => { location.hash = c; }, cap);
    await expect(page.locator('html')).toHaveAttribute('data-file-state', 'shown', { timeout: 600_000 });
    await expect(page.locator('html')).toHaveAttribute('data-crypto', mode);
    const d = await page.evaluate(() => window.lafsTimings.download);
    figures.push([`browser (${mode} AES): download + verify + decrypt (in the page)`, rate(d.bytes, d.ms)]);
    await page.goto(`${grid.url}/${mode === 'wasm' ? '?crypto=wasm' : ''}`);
    await expect(page.locator('html')).toHaveAttribute('data-lafs-ready', 'true');
    await page.locator('#upload-input').setInputFiles(inputFile);
    await expect(page.locator('html')).toHaveAttribute('data-upload-state', 'done', { timeout: 600_000 });
    const u = await page.evaluate(() => window.lafsTimings.upload);
    figures.push([`browser (${mode} AES): encrypt (in the page)`, rate(u.bytes, u.encryptMs)]);
    figures.push([`browser (${mode} AES): encrypt + upload (in the page)`, rate(u.bytes, u.encryptMs + u.uploadMs)]);
  }

  await page.goto(`${grid.url}/`);
  await expect(page.locator('html')).toHaveAttribute('data-lafs-ready', 'true');
  t = performance.now();
  await page.locator('#upload-input').setInputFiles(inputFile);
  await expect(page.locator('html')).toHaveAttribute('data-upload-state', 'done', { timeout: 600_000 });
  figures.push(['browser: file chooser + encrypt + upload (seen by the test)', rate(original.length, performance.now() - t)]);
  const up = await page.evaluate(() => window.lafsTimings.upload);
  figures.push(['browser: encrypt (in the page)', rate(up.bytes, up.encryptMs)]);
  figures.push(['browser: PUT /ciphertext (in the page)', rate(up.bytes, up.uploadMs)]);
  figures.push(['browser: encrypt + upload (in the page)', rate(up.bytes, up.encryptMs + up.uploadMs)]);

  rmSync(inputFile, { force: true });
  console.log(`\nlafs web app throughput, ${MIB} MiB:\n` + figures.map(([k, v]) => `  ${k}: ${v}`).join('\n'));
});
