// With `?direct=on`, share links read the file's data shares straight from the storage servers
// (web/direct.js): every block and segment checked in the tab, no cap or key in any request, and
// the gateway's verifycap endpoint as the fallback when a server fails or lies. By default the
// page reads through the gateway (faster on one machine; see the benchmark). With LAFS_BENCH=1 also a
// download benchmark (storage servers vs gateway, into memory vs streamed save), next to
// `lafs get` in the same run.
import { test, expect } from '@playwright/test';
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { loadavg } from 'node:os';
import { lafsBin } from '../grid.mjs';
import { launchRaw, openTab } from '../raw-chromium.mjs';
import { bytes, sha, useGrid, recordRequests, expectNoSecret } from '../helpers.mjs';

const MiB = 1 << 20;

const grid = useGrid();

/**
 * Opens `cap` in the page (`query` e.g. '?sw=off') and waits until it is shown; `loaded` runs
 * once the page is ready, before the link is opened.
 */
async function open(page, cap, query = '', loaded = () => {}) {
  await page.goto(`${grid.url}/${query}`);
  await expect(page.locator('html')).toHaveAttribute('data-lafs-ready', 'true');
  await loaded();
  await page.evaluate((c) => { location.hash = c; }, cap);
  await expect(page.locator('html')).toHaveAttribute('data-file-state', /shown|error/, { timeout: 120_000 });
}

/** Saves the shown file with its Save link; its bytes. */
async function save(page) {
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.locator('#file-download').click(),
  ]);
  return readFileSync(await download.path());
}

const shareReads = (requests) =>
  requests.filter((r) => /\/storage\/v1\/immutable\/[a-z2-7]+\/\d+$/.test(new URL(r.url()).pathname));
const gatewayCiphertext = (requests) =>
  requests.filter((r) => new URL(r.url()).pathname.startsWith('/ciphertext/'));

test('a streamed file comes from the storage servers, checked in the tab', async ({ page }) => {
  test.setTimeout(120_000);
  const original = bytes(20 * MiB + 12345, 7);
  const cap = grid.put(original);
  const requests = recordRequests(page);
  await open(page, cap, '?direct=on');
  expect(await page.evaluate(() => window.lafsTimings.directUnavailable ?? null)).toBeNull();
  await expect(page.locator('html')).toHaveAttribute('data-source', 'storage-servers');
  await expect(page.locator('html')).toHaveAttribute('data-delivery', 'stream');
  const saved = await save(page);
  expect(sha(saved)).toBe(sha(original));
  const s = await page.evaluate(() => window.lafsTimings.stream);
  expect(s.via, s.fallback).toBe('storage-servers');
  // Blocks of the k = 3 data shares, by range; nothing of the file from the gateway.
  const reads = shareReads(requests);
  const shares = new Set(reads.map((r) => new URL(r.url()).pathname.split('/').pop()));
  expect([...shares].sort()).toEqual(['0', '1', '2']);
  expect(gatewayCiphertext(requests)).toEqual([]);
  await expectNoSecret(requests, cap);
});

test('a small file is read whole from the storage servers', async ({ page }) => {
  const original = bytes(3 * MiB + 5, 8);
  const cap = grid.put(original);
  const requests = recordRequests(page);
  await open(page, cap, '?direct=on');
  await expect(page.locator('html')).toHaveAttribute('data-source', 'storage-servers');
  // Read and verified whole when opened (files up to 16 MiB).
  expect((await page.evaluate(() => window.lafsTimings.download)).via).toBe('storage-servers');
  expect(sha(await save(page))).toBe(sha(original));
  expect(gatewayCiphertext(requests)).toEqual([]);
  await expectNoSecret(requests, cap);
});

test('a storage server that alters a block: the gateway serves the file instead', async ({ page }) => {
  test.setTimeout(120_000);
  const original = bytes(20 * MiB, 9);
  const cap = grid.put(original);
  // A dishonest storage server: one byte of the blocks of share 1 it sends is flipped.
  let altered = 0;
  await page.route(/\/storage\/v1\/immutable\/[a-z2-7]+\/1$/, async (route) => {
    const range = (await route.request().allHeaders()).range ?? '';
    const m = /bytes=(\d+)-(\d+)/.exec(range);
    const resp = await route.fetch();
    if (!m || Number(m[1]) > 1000) return route.fulfill({ response: resp }); // trailers pass
    const body = Buffer.from(await resp.body());
    body[body.length >> 1] ^= 0x01;
    altered++;
    return route.fulfill({ response: resp, body });
  });
  const requests = recordRequests(page);
  await open(page, cap, '?direct=on');
  await expect(page.locator('html')).toHaveAttribute('data-file-state', 'shown');
  expect(sha(await save(page))).toBe(sha(original));
  expect(altered).toBeGreaterThan(0);
  const s = await page.evaluate(() => window.lafsTimings.stream);
  expect(s.via).toBe('gateway');
  expect(s.fallback).toMatch(/segment \d+ read from the storage servers does not match/);
  expect(gatewayCiphertext(requests).length).toBeGreaterThan(0);
  await expectNoSecret(requests, cap);
});

test('storage servers out of reach: the gateway serves the file', async ({ page }) => {
  const original = bytes(2 * MiB, 10);
  const cap = grid.put(original);
  await page.route(/\/storage\/v1\//, (route) => route.abort());
  await open(page, cap, '?direct=on');
  await expect(page.locator('html')).toHaveAttribute('data-source', 'gateway');
  expect(sha(await save(page))).toBe(sha(original));
  expect(await page.evaluate(() => window.lafsTimings.directUnavailable)).toBeTruthy();
});

test('by default (and with ?direct=off) the page reads through the gateway', async ({ page }) => {
  const original = bytes(1 * MiB, 11);
  const cap = grid.put(original);
  const requests = recordRequests(page);
  await open(page, cap);
  await expect(page.locator('html')).toHaveAttribute('data-source', 'gateway');
  expect(sha(await save(page))).toBe(sha(original));
  expect(shareReads(requests)).toEqual([]);
});

test('shares altered on disk on every server: an integrity error, nothing shown', async ({ page }) => {
  const original = bytes(3 * MiB, 12);
  const cap = grid.put(original);
  const si = await (async () => {
    await page.goto(`${grid.url}/`);
    await expect(page.locator('html')).toHaveAttribute('data-lafs-ready', 'true');
    return page.evaluate((c) => new window.wasmBindings.DirectReader(c).storageIndex, cap);
  })();
  for (const p of grid.shareFiles().filter((f) => f.includes(`/${si}/`))) {
    const b = grid.read(p);
    b[1000] ^= 0xff; // inside the first block
    grid.write(p, b);
  }
  await open(page, cap, '?direct=on');
  await expect(page.locator('html')).toHaveAttribute('data-file-state', 'error');
  await expect(page.locator('#file-download')).toBeHidden();
  await expect(page.locator('#file-view')).toBeEmpty();
});

/**
 * CPU time (ms) used so far by the grid (`lafs`) and by Chromium, by process type and, inside
 * renderers, by thread name (the page's main thread, dedicated workers, the service worker,
 * WebCrypto's and other pool threads). Linux only; 10 ms resolution.
 */
function cpuTimes() {
  const out = {};
  const add = (k, v) => { out[k] = (out[k] ?? 0) + v; };
  const ticks = (stat) => {
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10; // utime + stime, 100 Hz
  };
  // Only this test's processes (the grid and the browsers it started: its descendants); the
  // machine may run other grids and browsers.
  const parent = new Map();
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
      parent.set(pid, st.slice(st.lastIndexOf(')') + 2).split(' ')[1]);
    } catch {
      // the process ended
    }
  }
  const mine = (pid) => {
    for (let p = pid, i = 0; p && p !== '0' && i < 64; p = parent.get(p), i++) {
      if (p === String(process.pid)) return true;
    }
    return false;
  };
  for (const pid of [...parent.keys()].filter(mine)) {
    try {
      let cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      // Zygote children rewrite their command line into one space-separated string.
      if (cmd.length <= 2) cmd = cmd[0].split(' ');
      const exe = cmd[0].split('/').pop();
      if (exe === 'lafs' && cmd[1] === 'demo') {
        add('grid (lafs demo: gateway + storage servers)', ticks(readFileSync(`/proc/${pid}/stat`, 'utf8')));
      } else if (exe === 'chromium' || exe === 'chrome') {
        const type = (cmd.find((a) => a.startsWith('--type=')) ?? '--type=browser').slice(7);
        const sub = (cmd.find((a) => a.startsWith('--utility-sub-type=')) ?? '').split('.').pop();
        if (type !== 'renderer') {
          add(`chromium ${type}${sub ? ' ' + sub : ''}`, ticks(readFileSync(`/proc/${pid}/stat`, 'utf8')));
          continue;
        }
        for (const tid of readdirSync(`/proc/${pid}/task`)) {
          const st = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
          const name = st.slice(st.indexOf('(') + 1, st.lastIndexOf(')')).replace(/\d+$/, '').trim();
          add(`renderer: ${name}`, ticks(st));
        }
      }
    } catch {
      // the process ended
    }
  }
  // Children of this test process that ended (`lafs get`): cutime + cstime.
  const me = readFileSync('/proc/self/stat', 'utf8');
  const f = me.slice(me.lastIndexOf(')') + 2).split(' ');
  out['lafs get (CLI)'] = (Number(f[13]) + Number(f[14])) * 10;
  return out;
}

/** `after - before` of cpuTimes(), in ms per MiB, largest first (entries under 0.05). */
function cpuPerMiB(before, after, mib) {
  return Object.entries(after)
    .map(([k, v]) => [k, (v - (before[k] ?? 0)) / mib])
    .filter(([, v]) => v >= 0.05)
    .sort((x, y) => y[1] - x[1])
    .map(([k, v]) => `${k} ${v.toFixed(2)}`)
    .join('; ');
}

/** Self time of a CPU profile (DevTools `Profiler`), top `n` functions, as text. */
function topSelf(profile, n = 12) {
  const byId = new Map(profile.nodes.map((x) => [x.id, x]));
  const self = new Map();
  const dt = profile.timeDeltas;
  profile.samples.forEach((id, i) => {
    const f = byId.get(id).callFrame;
    const key = `${f.functionName || '(anonymous)'} ${f.url.split('/').pop()}:${f.lineNumber + 1}`;
    self.set(key, (self.get(key) ?? 0) + (dt[i] ?? 0) / 1000);
  });
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  return [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, n)
    .map(([k, ms]) => `${k} ${ms.toFixed(0)} ms`).join('; ') + ` (of ${total.toFixed(0)} ms sampled)`;
}

/** `tab.evaluate(expr)`, again while the page is still being loaded (its context replaced). */
async function evaluateLoaded(tab, expr) {
  for (let i = 0; ; i++) {
    try {
      return await tab.evaluate(expr);
    } catch (e) {
      if (i > 100 || !/context|destroyed|not found/i.test(String(e.message))) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** Closes the tabs of the grid's pages in a raw Chromium. */
async function closeTabs(chrome) {
  const { targetInfos } = await chrome.send('Target.getTargets');
  for (const t of targetInfos.filter((x) => x.type === 'page' && x.url.startsWith(grid.url))) {
    await chrome.send('Target.closeTarget', { targetId: t.targetId }).catch(() => {});
  }
}

test('download throughput: storage servers vs gateway', async ({ page }) => {
  test.skip(!process.env.LAFS_BENCH, 'benchmark: set LAFS_BENCH=1 to run');
  test.setTimeout(900_000);
  const mib = Number(process.env.LAFS_BENCH_MIB ?? 256);
  const original = randomBytes(mib * MiB);
  const rate = (n, ms) => ((n / 1e6) / (ms / 1000)).toFixed(1);
  const cap = grid.put(original);
  const rounds = Number(process.env.LAFS_BENCH_ROUNDS ?? 2);
  const rows = [];
  for (let round = 0; round < rounds; round++) {
    let t = performance.now();
    const cpuGet = cpuTimes();
    expect(sha(grid.get(cap))).toBe(sha(original));
    rows.push(['lafs get --node (CLI, native)', rate(original.length, performance.now() - t), '']);
    rows.push(['  CPU ms per MiB', '', cpuPerMiB(cpuGet, cpuTimes(), mib)]);
    const load = loadavg().map((x) => x.toFixed(1)).join(' ');
    rows.push([`(load average ${load})`, '', '']);
    const extra = (process.env.LAFS_BENCH_DIRECT_QUERY ?? '').replace(/^[?&]?/, '&');
    for (const [label, query] of [
      ['storage servers, into memory', `?sw=off&direct=on${extra === '&' ? '' : extra}`],
      ['gateway, into memory', '?sw=off&direct=off'],
      ['storage servers, streamed save', '?direct=on'],
      ['gateway, streamed save', '?direct=off'],
    ]) {
      let cpu0 = null;
      // LAFS_BENCH_PROFILE=1: a sampling profile of the page's main thread during the read.
      const cdp = process.env.LAFS_BENCH_PROFILE ? await page.context().newCDPSession(page) : null;
      await open(page, cap, query, async () => {
        cpu0 = cpuTimes();
        if (cdp) {
          await cdp.send('Profiler.enable');
          await cdp.send('Profiler.setSamplingInterval', { interval: 200 });
          await cdp.send('Profiler.start');
        }
      });
      const memory = query.includes('sw=off');
      let extra = '';
      let figure;
      if (memory) {
        const d = await page.evaluate(() => window.lafsTimings.download);
        figure = rate(d.bytes, d.ms);
        extra = `via ${d.via}; waited ${(d.waitMs / 1000).toFixed(2)} s of ${(d.ms / 1000).toFixed(2)}; batches: fetch (storage servers) + hash + verify + decrypt ${(d.cryptoMs / 1000).toFixed(1)} s (overlapping)`;
      } else {
        t = performance.now();
        const saved = await save(page);
        const ms = performance.now() - t;
        expect(sha(saved)).toBe(sha(original));
        const s = await page.evaluate(() => window.lafsTimings.stream);
        figure = rate(original.length, ms);
        extra = `in the page ${rate(s.bytes, s.ms)}; via ${s.via}; waited ${(s.waitMs / 1000).toFixed(2)} s of ${(s.ms / 1000).toFixed(2)}`;
      }
      rows.push([`browser, ${label}`, figure, extra]);
      rows.push(['  CPU ms per MiB', '', cpuPerMiB(cpu0, cpuTimes(), mib)]);
      if (cdp) {
        const { profile } = await cdp.send('Profiler.stop');
        rows.push(['  page main thread, self time', '', topSelf(profile)]);
        await cdp.detach();
      }
    }
  }
  // The same in a Chromium without Playwright: Playwright turns on the DevTools Network domain
  // for every page and worker, and Chromium then copies every response body for the inspector,
  // which costs the page a good part of its CPU per byte received.
  const chrome = await launchRaw();
  try {
    for (let round = 0; round < rounds; round++) {
      for (const [label, query] of [['storage servers', '?direct=on'], ['gateway', '?direct=off']]) {
        const sep = query ? '&' : '?';
        const tab = await openTab(chrome, `${grid.url}/${query}${sep}sw=off#${cap}`);
        const d = await evaluateLoaded(tab, `new Promise((resolve) => {
          const f = () => (window.lafsTimings?.download ? resolve(window.lafsTimings.download) : setTimeout(f, 20));
          f();
        })`);
        rows.push([`browser without Playwright, ${label}, into memory`, rate(d.bytes, d.ms), `via ${d.via}`]);
        await closeTabs(chrome);
        // Through the service worker: the page reads its own Save link (no disk).
        const tab2 = await openTab(chrome, `${grid.url}/${query}#${cap}`);
        const s = await evaluateLoaded(tab2, `new Promise((resolve, reject) => {
          const f = async () => {
            if (document.documentElement?.dataset.fileState !== 'shown') return setTimeout(f, 20);
            const t = performance.now();
            const r = await fetch(document.getElementById('file-download').href);
            const reader = r.body.getReader();
            let n = 0;
            for (;;) {
              const { done, value } = await reader.read();
              if (done) break;
              n += value.length;
            }
            resolve({ n, ms: performance.now() - t, via: window.lafsTimings.stream?.via });
          };
          f().catch(reject);
        })`);
        expect(s.n).toBe(original.length);
        rows.push([`browser without Playwright, ${label}, through the service worker (read by the page)`, rate(s.n, s.ms), `via ${s.via}`]);
        await closeTabs(chrome);
      }
    }
  } catch (e) {
    rows.push(['(without Playwright: failed)', '', String(e.message)]);
  } finally {
    await chrome.close();
  }
  const load = loadavg().map((x) => x.toFixed(1)).join(' ');
  console.log(`\nlafs download, ${mib} MiB (lafs: ${lafsBin()}; load average at the end ${load}):\n`
    + rows.map(([k, v, e]) => `  ${k}${v ? `: ${v} MB/s` : ''} ${e}`).join('\n'));
});
