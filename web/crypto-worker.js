// A dedicated worker of the lafs page (files.js) that runs WebCrypto for it: the hashes of the
// data blocks of each segment and AES-CTR decryption of ciphertext batches, and for shares read
// from the storage servers (direct.js) block hashes and the joining of blocks into segments. WebCrypto work from one JS context runs one operation
// at a time, so two of these workers hash and decrypt two batches at once.
//
// It decides nothing: the page checks the hashes against the file's hash tree (in wasm) before it
// asks for a decryption. The key arrives as a non-extractable CryptoKey from the page and is never
// sent anywhere. Its only requests are the page's range reads of data shares from storage servers
// (storage index, share number and byte range: nothing secret), so that share bytes never pass
// through the page.
import { blockDigests } from './digests.js';
import { aesCtr } from './webcrypto.js';

/** Scratch buffer of blockDigests, kept between batches. */
const scratch = {};

/**
 * Hashes each block of segments `a..b` read from the k data shares (`shares[i]`: the blocks of
 * share i back to back from byte `blockPrefix.length` on, each segment's block `blockSize` bytes
 * apart), as stored (padding included): the segments' leaves are made of these digests. Joins the
 * blocks into `out` (from byte 0, padding cut) for decryption. The hash prefix is written just
 * before each block and the bytes it covers put back at once: WebCrypto copies its input when
 * called, so nothing is copied for hashing. Resolves to the block digests (segment by segment,
 * share by share) and the number of ciphertext bytes joined.
 */
async function blocks(m, shares, out) {
  const { a, b, k, segSize, fileSize, blockSize, blockPrefix } = m;
  const hb = blockPrefix.length;
  const bd = new Uint8Array((b - a) * k * 32);
  const pending = [];
  const keepB = new Uint8Array(hb);
  const lastLen = Math.min(segSize, fileSize - (b - 1) * segSize);
  const need = hb + (b - a - 1) * blockSize + Math.ceil(lastLen / k);
  shares.forEach((buf, i) => {
    if (buf.length < need) throw new Error(`the buffer of share ${i} holds ${buf.length} bytes, fewer than the ${need} segments ${a}..${b} need`);
  });
  if (out.length < (b - a) * segSize) throw new Error(`the output buffer holds ${out.length} bytes, fewer than segments ${a}..${b} need`);
  let o = 0;
  for (let j = a; j < b; j++) {
    const len = Math.min(segSize, fileSize - j * segSize);
    const bs = Math.ceil(len / k);
    const segStart = o;
    for (let i = 0; i < k; i++) {
      const buf = shares[i];
      const p = hb + (j - a) * blockSize;
      keepB.set(buf.subarray(p - hb, p));
      buf.set(blockPrefix, p - hb);
      const slot = ((j - a) * k + i) * 32;
      pending.push(crypto.subtle.digest('SHA-256', buf.subarray(p - hb, p + bs)).then((d) => bd.set(new Uint8Array(d), slot)));
      buf.set(keepB, p - hb);
      const n = Math.min(bs, segStart + len - o);
      if (n > 0) {
        out.set(buf.subarray(p, p + n), o);
        o += n;
      }
    }
  }
  await Promise.all(pending);
  return { blockDigests: bd, len: o };
}

/**
 * Share buffers of finished batches, reused by the next ones instead of a fresh buffer for every
 * response (new memory to map and zero, then garbage to collect). At most two batches' worth
 * (2k buffers) are kept.
 */
const sharePool = [];

function takeShareBuffer(size) {
  for (let i = sharePool.length - 1; i >= 0; i--) {
    if (sharePool[i].byteLength >= size) return sharePool.splice(i, 1)[0];
  }
  return new ArrayBuffer(size);
}

function releaseShareBuffers(bufs) {
  for (const b of bufs) {
    if (sharePool.length >= 2 * bufs.length) sharePool.shift();
    sharePool.push(b.buffer);
  }
}

/**
 * Reads the whole body of `resp` (exactly `len` bytes) into `ab` from byte `at` on, with a BYOB
 * reader (the browser writes into the buffer, no intermediate copy) where there is one. Resolves
 * to the buffer (a BYOB read hands the same memory back in a new ArrayBuffer).
 */
async function readBodyInto(resp, ab, at, len) {
  let byob = null;
  try {
    byob = resp.body?.getReader({ mode: 'byob' }) ?? null;
  } catch {
    // no byte stream here
  }
  const short = (n) => new Error(`a storage server sent ${n} bytes for a range of ${len}`);
  if (!byob) {
    const got = new Uint8Array(await resp.arrayBuffer());
    if (got.length !== len) throw short(got.length);
    new Uint8Array(ab, at, len).set(got);
    return ab;
  }
  let off = 0;
  while (off < len) {
    const { value, done } = await byob.read(new Uint8Array(ab, at + off, len - off));
    if (done) throw short(off);
    ab = value.buffer;
    off += value.length;
  }
  const { value, done } = await byob.read(new Uint8Array(1));
  if (!done) {
    byob.cancel().catch(() => {});
    throw short(off + (value?.length ?? 0) + 1);
  }
  return ab;
}

/**
 * The blocks of one batch from each data share: `urls[i]` (a storage server's
 * `/storage/v1/immutable/<si>/<i>`), bytes `from .. offset + length` of every share, each body
 * read straight into a buffer of the pool. Each resolves to a buffer with the blocks from byte
 * `room` on. Only the storage index, share numbers and ranges leave this worker.
 */
function fetchShares({ urls, offset, length, room }) {
  const from = Math.max(0, offset - room);
  // The first block of the file has fewer bytes than the room before it in the share.
  const at = room - (offset - from);
  return Promise.all(urls.map(async (url) => {
    let resp;
    try {
      resp = await fetch(url, { cache: 'no-store', headers: { Range: `bytes=${from}-${offset + length - 1}` } });
    } catch (err) {
      throw new Error(`a storage server could not be reached (${err.message})`);
    }
    if (resp.status !== 206) throw new Error(`a storage server answered ${resp.status} to a range request`);
    const ab = await readBodyInto(resp, takeShareBuffer(room + length), at, offset + length - from);
    return new Uint8Array(ab, 0, room + length);
  }));
}

self.onmessage = async (e) => {
  const { id, op, bytes } = e.data;
  try {
    if (op === 'digest') {
      const d = await blockDigests(e.data.prefix, bytes, e.data.segSize, e.data.k, scratch);
      self.postMessage({ id, digests: d, bytes }, [d.buffer, bytes.buffer]);
    } else if (op === 'blocks') {
      const { out } = e.data;
      const shares = await fetchShares(e.data);
      // WebCrypto copied each block when blocks() called it: the share buffers are free again.
      let r;
      try {
        r = await blocks(e.data, shares, out);
      } finally {
        releaseShareBuffers(shares);
      }
      // The joined ciphertext goes back.
      self.postMessage({ id, ...r, out }, [r.blockDigests.buffer, out.buffer]);
    } else if (op === 'decrypt') {
      // `bytes` may be a view into a larger buffer (a joined batch after its hash prefix).
      const plain = (await aesCtr(e.data.key, e.data.offset, bytes)).buffer;
      self.postMessage({ id, plain, bytes }, [plain, bytes.buffer]);
    } else {
      throw new Error(`unknown operation ${op}`);
    }
  } catch (err) {
    self.postMessage({ id, error: String(err?.message ?? err) });
  }
};
