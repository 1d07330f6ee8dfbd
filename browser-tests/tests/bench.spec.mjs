// Throughput of the web app against a local grid, next to the CLI on the same grid. Runs only with
// LAFS_BENCH=1 (e.g. `LAFS_BENCH=1 LAFS_BENCH_MIB=256 npx playwright test bench`); prints figures.
// The grid runs $LAFS_BIN: for figures, a release build (`cargo build --release -p lafs-cli`,
// then LAFS_BIN=$CARGO_TARGET_DIR/release/lafs); by default the tests' dev build.
import { test, expect } from '@playwright/test';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir, loadavg } from 'node:os';
import { join } from 'node:path';
import { lafsBin } from '../grid.mjs';
import { sha, useGrid, openApp } from '../helpers.mjs';

test.skip(!process.env.LAFS_BENCH, 'benchmark: set LAFS_BENCH=1 to run');

const MIB = Number(process.env.LAFS_BENCH_MIB ?? 32);
/** LAFS_BENCH_PARTS=upload (or download) measures only that side; both by default. */
const PARTS = process.env.LAFS_BENCH_PARTS ?? 'download,upload';
const rate = (bytes, ms) => `${((bytes / 1e6) / (ms / 1000)).toFixed(1)} MB/s`;

const grid = useGrid();

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

  // Streamed through the service worker to disk (the path for every file above 16 MiB).
  const modes = [
    ['webcrypto', 'webcrypto', ''],
    ['webcrypto in the page, no workers', 'webcrypto', '?workers=0'],
    ['wasm', 'wasm', '?crypto=wasm'],
  ];
  for (const [label, mode, query] of PARTS.includes('download') ? modes : []) {
    await openApp(page, grid.url, query);
    await page.evaluate((c) => { location.hash = c; }, cap);
    await expect(page.locator('html')).toHaveAttribute('data-file-state', 'shown', { timeout: 600_000 });
    await expect(page.locator('html')).toHaveAttribute('data-crypto', mode);
    const stream = (await page.locator('html').getAttribute('data-delivery')) === 'stream';
    t = performance.now();
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.locator('#file-download').click(),
    ]);
    const path = await download.path();
    const ms = performance.now() - t;
    expect(sha(readFileSync(path))).toBe(sha(original));
    const how = stream ? 'streamed save through the service worker' : 'save from memory';
    figures.push([`browser (${label}): ${how}, download + verify + decrypt + write (seen by the test)`, rate(original.length, ms)]);
    if (stream) {
      const s = await page.evaluate(() => window.lafsTimings.stream);
      figures.push([`browser (${label}): ${how} (in the page)`, `${rate(s.bytes, s.ms)} (of ${(s.ms / 1000).toFixed(1)} s, the reader waited ${(s.waitMs / 1000).toFixed(1)} s for verified batches; hashing + verifying + decrypting took ${(s.cryptoMs / 1000).toFixed(1)} s, overlapping)`]);
    }
  }

  // Read whole into memory (no service worker: ?sw=off).
  for (const [label, mode, query] of PARTS.includes('download') ? modes : []) {
    await openApp(page, grid.url, `?sw=off${query.replace('?', '&')}`);
    await page.evaluate((c) => { location.hash = c; }, cap);
    await expect(page.locator('html')).toHaveAttribute('data-file-state', 'shown', { timeout: 600_000 });
    await expect(page.locator('html')).toHaveAttribute('data-crypto', mode);
    const d = await page.evaluate(() => window.lafsTimings.download);
    figures.push([`browser (${label}): into memory, download + verify + decrypt (in the page, ?sw=off)`, rate(d.bytes, d.ms)]);
  }

  for (const mode of PARTS.includes('upload') ? ['webcrypto', 'wasm'] : []) {
    await openApp(page, grid.url, mode === 'wasm' ? '?crypto=wasm' : '');
    await page.locator('#upload-input').setInputFiles(inputFile);
    await expect(page.locator('html')).toHaveAttribute('data-upload-state', 'done', { timeout: 600_000 });
    const u = await page.evaluate(() => window.lafsTimings.upload);
    figures.push([`browser (${mode} AES): encrypt (in the page)`, rate(u.bytes, u.encryptMs)]);
    figures.push([`browser (${mode} AES): encrypt + upload (in the page)`, rate(u.bytes, u.encryptMs + u.uploadMs)]);
  }

  await openApp(page, grid.url);
  t = performance.now();
  await page.locator('#upload-input').setInputFiles(inputFile);
  await expect(page.locator('html')).toHaveAttribute('data-upload-state', /done|error/, { timeout: 600_000 });
  expect(await page.locator('html').getAttribute('data-upload-state'), await page.locator('#upload-status').innerText()).toBe('done');
  figures.push(['browser: file chooser + encrypt + upload (seen by the test)', rate(original.length, performance.now() - t)]);
  const up = await page.evaluate(() => window.lafsTimings.upload);
  figures.push(['browser: encrypt (in the page)', rate(up.bytes, up.encryptMs)]);
  // Encryption overlaps the upload session's chunk requests: uploadMs is the rest of the time.
  figures.push(['browser: upload session, time not spent encrypting (in the page)', rate(up.bytes, up.uploadMs)]);
  figures.push(['browser: encrypt + upload (in the page)', rate(up.bytes, up.encryptMs + up.uploadMs)]);

  if (PARTS.includes('upload')) {
    // Into a directory: by default the tab encrypts (WebCrypto), the gateway's upload session
    // erasure-codes and stores, the tab links the cap; with ?direct=on the tab encrypts and
    // erasure-codes in wasm (LafsGrid) and sends the shares straight to the storage servers.
    const name = inputFile.slice(inputFile.lastIndexOf('/') + 1);
    for (const [label, query] of [
      ['encrypt in the tab + the gateway\'s upload session + link', ''],
      ['encrypt + erasure-code in wasm + shares to the storage servers (?direct=on)', '?direct=on'],
    ]) {
      const dir = grid.cli('mkdir').toString().trim();
      await page.goto(`${grid.url}/${query}#${dir}`);
      await expect(page.locator('html')).toHaveAttribute('data-dir-state', 'shown', { timeout: 60_000 });
      t = performance.now();
      await page.locator('#dir-upload-input').setInputFiles(inputFile);
      await expect(page.locator('html')).toHaveAttribute('data-dir-op', /^(done|error)$/, { timeout: 600_000 });
      const ms = performance.now() - t;
      expect(await page.locator('html').getAttribute('data-dir-op'), await page.locator('#dir-op-status').innerText()).toBe('done');
      const out = join(tmpdir(), `lafs-bench-dir-${process.pid}.bin`);
      grid.cli('cp', `${dir}:${name}`, out);
      expect(sha(readFileSync(out))).toBe(sha(original));
      rmSync(out, { force: true });
      figures.push([`browser: upload into a directory, ${label} (seen by the test)`, rate(original.length, ms)]);
    }
  }

  rmSync(inputFile, { force: true });
  const load = loadavg().map((x) => x.toFixed(1)).join(' ');
  console.log(`\nlafs web app throughput, ${MIB} MiB (lafs: ${lafsBin()}; load average ${load}):\n` + figures.map(([k, v]) => `  ${k}: ${v}`).join('\n'));
});
