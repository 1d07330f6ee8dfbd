// The web app (web/, built by Trunk) in headless Chromium: it loads its wasm, opens caps from the
// URL fragment and from the text box, reports malformed caps, and never sends a cap anywhere.
import { test, expect } from '@playwright/test';
import { readFileSync } from 'node:fs';

const vectors = JSON.parse(
  readFileSync(new URL('../../docs/spec/vectors/caps.json', import.meta.url), 'utf8'),
);
const vector = (kind) => vectors.valid.find((v) => v.kind === kind);
const READCAP = vector('immutable-read');
const VERIFYCAP = vectors.valid.find(
  (v) => v.kind === 'immutable-verify' && v.text !== READCAP.verify_cap_text,
);
const LITERAL = vectors.valid.find((v) => v.kind === 'literal' && v.data.length > 0);

const base = () => {
  const url = process.env.LAFS_WEB_URL;
  if (!url) throw new Error('LAFS_WEB_URL is not set (global setup did not run)');
  return url;
};

/** Opens the app at `#fragment` and waits until its wasm has started. */
async function open(page, fragment = '') {
  await page.goto(`${base()}/${fragment ? '#' + fragment : ''}`);
  await expect(page.locator('html')).toHaveAttribute('data-lafs-ready', 'true');
}

/** Replaces one data character of a cap (after the `1` separator) with another bech32 character. */
function corrupt(text, at = 20) {
  const swap = text[at] === 'q' ? 'p' : 'q';
  return text.slice(0, at) + swap + text.slice(at + 1);
}

test('the page loads its wasm and starts', async ({ page }) => {
  const failures = [];
  page.on('pageerror', (e) => failures.push(e.message));
  page.on('requestfailed', (r) => failures.push(`${r.url()} ${r.failure()?.errorText}`));
  await open(page);
  await expect(page.locator('#status')).toHaveText(/Paste a cap/);
  await expect(page.locator('#open-button')).toBeEnabled();
  await expect(page.locator('#upload-input')).toBeEnabled();
  // Trunk's loader exposes the module's exports; the API answers.
  const version = await page.evaluate(() => window.wasmBindings.version());
  expect(version).toMatch(/^\d+\.\d+\.\d+/);
  const kind = await page.evaluate((t) => window.wasmBindings.parseCap(t).kind, READCAP.text);
  expect(kind).toBe('readcap');
  expect(failures).toEqual([]);
});

test('a readcap in the fragment shows its kind and its derived verifycap', async ({ page }) => {
  await open(page, READCAP.text);
  const result = page.locator('#result');
  await expect(result).toBeVisible();
  await expect(result).toHaveAttribute('data-kind', 'readcap');
  await expect(page.locator('#result-kind')).toHaveText('Immutable readcap');
  await expect(page.locator('#result-grants')).toContainText('Read');
  await expect(page.locator('#verify-cap')).toHaveText(READCAP.verify_cap_text);
  await expect(page.locator('#storage-index')).toHaveText(READCAP.storage_index);
  await expect(page.locator('#selection-index')).toHaveText(READCAP.selection_index);
  await expect(page.locator('#error')).toBeHidden();
  // This static server has no gateway API: fetching the file fails, and the page says so.
  await expect(page.locator('#file-error')).toHaveAttribute('data-kind', 'fetch');
  // The key appears nowhere on the page outside the cap itself.
  expect(await page.locator('#result').innerText()).not.toContain(READCAP.text.slice(6));
});

test('a verifycap says it does not grant reading; a literal cap shows its contents', async ({ page }) => {
  await open(page, VERIFYCAP.text);
  await expect(page.locator('#result')).toHaveAttribute('data-kind', 'verifycap');
  await expect(page.locator('#result-grants')).toContainText('does not grant reading');
  await expect(page.locator('#storage-index')).toHaveText(VERIFYCAP.storage_index);
  await expect(page.locator('#verify-cap')).toHaveCount(0);

  // Navigating to another fragment (hashchange) re-renders.
  await page.goto(`${base()}/#${LITERAL.text}&grid=example`);
  await expect(page.locator('#result')).toHaveAttribute('data-kind', 'literal');
  const size = Buffer.from(LITERAL.data, 'hex').length;
  await expect(page.locator('#literal-size')).toHaveText(`${size} bytes`);
});

test('a corrupted cap shows the checksum error', async ({ page }) => {
  await open(page, corrupt(READCAP.text));
  const error = page.locator('#error');
  await expect(error).toBeVisible();
  await expect(error).toHaveAttribute('data-code', 'bad-checksum');
  await expect(page.locator('#error-message')).toContainText('checksum does not match');
  await expect(page.locator('#result')).toBeHidden();

  // A cut-off cap says so.
  await page.goto(`${base()}/#${READCAP.text.slice(0, -1)}`);
  await expect(error).toHaveAttribute('data-code', 'truncated');
  await expect(page.locator('#error-message')).toContainText('truncated');
});

test('a pasted cap opens and becomes the link; a bad one is rejected', async ({ page }) => {
  await open(page);
  await page.locator('#cap-input').fill(`  ${VERIFYCAP.text.toUpperCase()}\n`);
  await page.locator('#open-button').click();
  await expect(page.locator('#result')).toHaveAttribute('data-kind', 'verifycap');
  expect(new URL(page.url()).hash).toBe(`#${VERIFYCAP.text}`);
  await expect(page.locator('#cap-input')).toHaveValue(VERIFYCAP.text);

  // A whole share link, as copied from an address bar, opens too.
  await page.locator('#cap-input').fill(`https://example.org/lafs/#${READCAP.text}&grid=g1`);
  await page.locator('#cap-input').press('Enter');
  await expect(page.locator('#result')).toHaveAttribute('data-kind', 'readcap');
  expect(new URL(page.url()).hash).toBe(`#${READCAP.text}&grid=g1`);
  await expect(page.locator('#cap-input')).toHaveValue(READCAP.text);

  await page.locator('#cap-input').fill('URI:CHK:aaaa:bbbb:3:10:1000');
  await page.locator('#cap-input').press('Enter');
  await expect(page.locator('#error')).toHaveAttribute('data-code', 'tahoe-cap');
  expect(new URL(page.url()).hash).toBe('');
});

test('no request carries a cap', async ({ page }) => {
  const requests = [];
  page.on('request', (r) => requests.push(r));
  const caps = [READCAP.text, VERIFYCAP.text, LITERAL.text];

  await open(page, `${READCAP.text}&name=example.txt`);
  await expect(page.locator('#verify-cap')).toHaveText(READCAP.verify_cap_text);
  await page.locator('#cap-input').fill(VERIFYCAP.text);
  await page.locator('#open-button').click();
  await expect(page.locator('#result')).toHaveAttribute('data-kind', 'verifycap');
  await page.goto(`${base()}/#${LITERAL.text}`);
  await expect(page.locator('#result')).toHaveAttribute('data-kind', 'literal');
  await page.reload();
  await expect(page.locator('html')).toHaveAttribute('data-lafs-ready', 'true');

  // The page did load its files (so the log is not trivially empty) ...
  const urls = requests.map((r) => r.url());
  expect(urls.some((u) => u.endsWith('.wasm'))).toBe(true);
  expect(urls.some((u) => u.endsWith('.js'))).toBe(true);
  // ... and no URL, header or body of any request contains a cap or its data part.
  for (const r of requests) {
    const seen = [r.url(), JSON.stringify(await r.allHeaders()), r.postData() ?? ''].join('\n');
    for (const cap of caps) {
      for (const needle of [cap, cap.slice(6), cap.toUpperCase()]) {
        expect(seen, `request ${r.method()} ${r.url()}`).not.toContain(needle);
      }
    }
    expect(new URL(r.url()).origin).toBe(base());
    // The readcap's verifycap (public) is sent only to fetch ciphertext.
    if (seen.includes(READCAP.verify_cap_text)) {
      expect(new URL(r.url()).pathname).toBe(`/ciphertext/${READCAP.verify_cap_text}`);
    }
  }
  expect(urls.some((u) => u.includes(`/ciphertext/${READCAP.verify_cap_text}`))).toBe(true);
});

test('fits a phone-sized viewport', async ({ page }) => {
  await page.setViewportSize({ width: 360, height: 740 });
  await open(page, READCAP.text);
  // The cap's technical details are folded away until asked for; open, they fit too.
  await expect(page.locator('#verify-cap')).toBeHidden();
  await page.locator('#result-more summary').click();
  await expect(page.locator('#verify-cap')).toBeVisible();
  const overflow = await page.evaluate(
    () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
  );
  expect(overflow).toBeLessThanOrEqual(0);
  await expect(page.locator('#open-button')).toBeInViewport();
});
