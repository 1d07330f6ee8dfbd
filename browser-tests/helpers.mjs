// Helpers shared by the specs that run the web app against a real local grid (../grid.mjs):
// test data, the grid's lifetime per spec file, opening/saving/uploading files in the page, and
// the check that no request carries a secret.
//
// Exported names are stable: specs import them by name.
import { test, expect } from '@playwright/test';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { startGrid } from './grid.mjs';

/** Deterministic pseudo-random bytes (xorshift32), so failures reproduce. */
export function bytes(n, seed = 1) {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return Buffer.from(out);
}

/** SHA-256 of a buffer, in hex. */
export const sha = (b) => createHash('sha256').update(b).digest('hex');

/** RFC 4648 base32, lowercase, no padding (storage directory names). */
export function base32(buf) {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  let bits = 0, value = 0, out = '';
  for (const byte of buf) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  return out;
}

/**
 * Starts one grid for the spec file (serial mode, started in `beforeAll`, stopped in `afterAll`)
 * and returns a stand-in for it: `grid.url`, `grid.put(...)` etc. work from the first test on.
 * Hooks the spec registers after this call run after the grid has started.
 */
export function useGrid(options) {
  let current;
  test.describe.configure({ mode: 'serial' });
  test.beforeAll(async () => {
    test.setTimeout(600_000); // may build the lafs binary first
    current = await startGrid(options);
  });
  test.afterAll(async () => {
    await current?.stop();
  });
  return new Proxy({}, {
    get(_, key) {
      if (!current) throw new Error(`grid.${String(key)} used before the grid started`);
      const v = current[key];
      return typeof v === 'function' ? v.bind(current) : v;
    },
  });
}

/** Records every request of a page, or of a browser context (which includes its service worker). */
export function recordRequests(pageOrContext) {
  const requests = [];
  pageOrContext.on('request', (r) => requests.push(r));
  return requests;
}

/** The secret part of a cap's text (after the `1` separator), both cases, and the whole cap. */
export function needles(cap) {
  const data = cap.slice(cap.indexOf('1') + 1);
  return [cap, data, data.toUpperCase(), cap.toUpperCase()];
}

/**
 * Asserts that requests were made and that none holds any of `caps` (a cap or an array of caps)
 * in its URL, headers or body. `allowed(url, request)`, if given, must also hold for each.
 */
export async function expectNoSecret(requests, caps, allowed) {
  expect(requests.length).toBeGreaterThan(0);
  const list = (Array.isArray(caps) ? caps : [caps]).flatMap(needles);
  // Every request and needle is checked, then one assertion reports them all: an expect() per
  // request and needle is a test step each, and the thousands of an upload's requests times a
  // dozen caps took over a minute on a loaded machine (of a 3-minute test timeout).
  const found = [];
  const elsewhere = [];
  for (const r of requests) {
    const body = r.postDataBuffer();
    const seen = [r.url(), JSON.stringify(await r.allHeaders()), body ? body.toString('latin1') : ''].join('\n');
    for (const needle of list) {
      if (seen.includes(needle)) found.push(`request ${r.method()} ${r.url()} holds ${needle}`);
    }
    if (allowed && allowed(new URL(r.url()), r) !== true) elsewhere.push(`request ${r.method()} ${r.url()}`);
  }
  expect(found, 'requests that carry a secret').toEqual([]);
  expect(elsewhere, 'requests to a place not allowed').toEqual([]);
}

/** Opens the app at `base` + `/query` and waits until its wasm has started. */
export async function openApp(page, base, query = '') {
  await page.goto(`${base}/${query}`);
  await expect(page.locator('html')).toHaveAttribute('data-lafs-ready', 'true');
}

/** Opens a share link and waits until the file is shown. */
export async function openFile(page, base, cap, query = '') {
  await page.goto(`${base}/${query}#${cap}`);
  await expect(page.locator('html')).toHaveAttribute('data-file-state', 'shown', { timeout: 60_000 });
}

/** Clicks Save and waits for the download to start: the Playwright `Download`. */
export async function saveFile(page) {
  const [download] = await Promise.all([
    page.waitForEvent('download', { timeout: 60_000 }),
    page.locator('#file-download').click(),
  ]);
  return download;
}

/** Opens a share link and saves the file through the page's download link: its bytes. */
export async function openAndSave(page, base, cap, query = '') {
  await openFile(page, base, cap, query);
  return readFileSync(await (await saveFile(page)).path());
}

/**
 * Uploads `data` from the tab's upload box (so that even 0 and 1 bytes get a readcap, not a
 * literal cap) and returns the cap of the link it shows.
 */
export async function uploadFromTab(page, base, data, query = '') {
  await openApp(page, base, query);
  await page.locator('#upload-input').setInputFiles({ name: 'f.bin', mimeType: 'application/octet-stream', buffer: data });
  await expect(page.locator('html')).toHaveAttribute('data-upload-state', 'done', { timeout: 60_000 });
  const link = await page.locator('#upload-link').inputValue();
  return link.slice(link.indexOf('#') + 1).split('&')[0];
}
