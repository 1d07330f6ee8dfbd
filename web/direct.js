// Reading a file's data shares straight from the storage servers (the tab as a grid reader).
//
// With the systematic erasure code the first k shares of a file hold its ciphertext itself
// (docs/spec/immutable.md §2): a segment is its k data blocks joined, with no decoding. So the
// page asks the storage servers (their list comes from the gateway's public GET /grid/servers)
// for the blocks of shares 0..k-1 with plain `GET /storage/v1/immutable/<si>/<share>` range
// requests (docs/spec/storage-protocol.md), one per share per batch of segments, made by the
// crypto workers (share bytes never pass through the page), and checks them:
//
// * wasm `DirectReader` checks each share's trailer (UEB against the storage index of the
//   verifycap, hash chain, block-tree and ciphertext-tree leaves) once;
// * the crypto workers hash every block as stored (WebCrypto SHA-256) and join the blocks into
//   segments; DirectReader.verifySegments makes each segment's ciphertext-tree leaf from its k
//   block digests and checks it against the verified leaves before the page asks for anything
//   to be decrypted.
//
// What the storage servers see: the storage index, share numbers and byte ranges. Never the cap
// or the key (DirectReader is built from the verifycap and never holds the key).
//
// Anything that keeps this from working (no server list, a data share missing or unreachable, a
// block that fails its check) makes the caller fall back to the gateway's verifycap endpoint,
// which can use the other shares; no unverified byte is ever handed out.

/** First suffix read of a share: its trailer (UEB, chain, both trees) for files up to ~200 segments. */
const FIRST_SUFFIX = 32 * 1024;
/** How long the storage servers may take to answer the listing and trailer requests. */
const SETUP_TIMEOUT_MS = 8_000;

class DirectError extends Error {}

async function fetchOk(url, init = {}, timeoutMs = 0) {
  const abort = new AbortController();
  const outer = init.signal;
  const onAbort = () => abort.abort();
  outer?.addEventListener('abort', onAbort, { once: true });
  const timer = timeoutMs ? setTimeout(() => abort.abort(), timeoutMs) : null;
  let resp;
  try {
    resp = await fetch(url, { cache: 'no-store', ...init, signal: abort.signal });
  } catch (e) {
    throw new DirectError(`a storage server could not be reached (${e.message})`);
  } finally {
    if (timer) clearTimeout(timer);
  }
  if (!resp.ok) {
    const text = (await resp.text().catch(() => '')).trim().slice(0, 200);
    throw new DirectError(`a storage server answered ${resp.status}${text ? `: ${text}` : ''}`);
  }
  return resp;
}

/** A file whose data shares the tab reads from the storage servers (see the top of this file). */
export class DirectSource {
  constructor(reader, shareUrls) {
    this.reader = reader;
    this.shareUrls = shareUrls;
    this.k = reader.k;
    this.blockSize = Math.ceil(reader.segmentSize / reader.k);
    this.blockPrefix = window.wasmBindings.blockHashPrefix();
  }

  /**
   * What a crypto worker needs to read the blocks of segments `a..b` from each data share, one
   * range request per share (`fetchShares` in crypto-worker.js): the range starts
   * `blockPrefix.length` bytes before the first block, room for the block hash prefix, so the
   * body is the buffer the worker hashes, with no copy.
   */
  batchRequest(a, b) {
    const [offset, length] = this.reader.blockRange(a, b);
    return { urls: this.shareUrls, offset, length, room: this.blockPrefix.length };
  }
}

/**
 * Finds the data shares of the file of `verifyCap` on the storage servers of `serverList` (a
 * promise of the JSON text of the gateway's `GET /grid/servers`, or of an introducer's verified
 * list: gateway.js serverListText) and checks their trailers. Resolves to a DirectSource, or
 * throws (DirectError, or an integrity error of a share) if the file cannot be read this way.
 */
export async function openDirect(verifyCap, serverList) {
  const w = window.wasmBindings;
  const reader = new w.DirectReader(verifyCap);
  let ok = false;
  try {
    const si = reader.storageIndex;
    let list;
    try {
      list = JSON.parse(await serverList);
    } catch (e) {
      throw new DirectError(`no list of storage servers (${e?.message ?? e})`);
    }
    const servers = (list?.servers ?? [])
      .map((s) => String(s?.url ?? '').replace(/\/+$/, ''))
      .filter((u) => /^https?:\/\//.test(u));
    if (servers.length === 0) throw new DirectError('no storage servers are listed');
    // Who holds which share (servers that do not answer are skipped).
    const holders = new Map(); // share number -> [{ url, length }]
    await Promise.all(servers.map(async (base) => {
      try {
        const r = await (await fetchOk(`${base}/storage/v1/immutable/${si}/shares`, {}, SETUP_TIMEOUT_MS)).json();
        for (const s of r?.shares ?? []) {
          if (!Number.isInteger(s?.share) || !Number.isSafeInteger(s?.length)) continue;
          if (!holders.has(s.share)) holders.set(s.share, []);
          holders.get(s.share).push({ url: `${base}/storage/v1/immutable/${si}/${s.share}`, length: s.length });
        }
      } catch {
        // unreachable or failing server: its shares are not used
      }
    }));
    if (!holders.has(0)) throw new DirectError('no storage server answered with share 0');
    // Share 0's trailer first: it tells k; then the other data shares' at once.
    const trailer = async (share) => {
      let last = null;
      for (const h of holders.get(share) ?? []) {
        try {
          let want = Math.min(FIRST_SUFFIX, h.length);
          for (let round = 0; round < 2; round++) {
            const resp = await fetchOk(h.url, { headers: { Range: `bytes=${h.length - want}-${h.length - 1}` } }, SETUP_TIMEOUT_MS);
            const bytes = new Uint8Array(await resp.arrayBuffer());
            const need = reader.addSuffix(share, h.length, bytes);
            if (need === 0) return h.url;
            if (need > h.length) throw new DirectError(`share ${share} is shorter than its trailer`);
            want = need;
          }
        } catch (e) {
          last = e; // another server may hold a good copy
        }
      }
      throw last ?? new DirectError(`no storage server answered with share ${share}`);
    };
    const urls = [await trailer(0)];
    const k = reader.k;
    urls.push(...await Promise.all(Array.from({ length: k - 1 }, (_, i) => trailer(i + 1))));
    if (!reader.ready) throw new DirectError('the data shares could not all be checked');
    ok = true;
    return new DirectSource(reader, urls);
  } finally {
    if (!ok) reader.free();
  }
}
