// A dedicated worker of the lafs page (files.js) that runs WebCrypto for it: segment hashes and
// AES-CTR decryption of ciphertext batches, and for shares read from the storage servers
// (direct.js) block hashes and the joining of blocks into segments. WebCrypto work from one JS context runs one operation
// at a time, so two of these workers hash and decrypt two batches at once.
//
// It decides nothing: the page checks the hashes against the file's hash tree (in wasm) before it
// asks for a decryption. The key arrives as a non-extractable CryptoKey from the page and is never
// sent anywhere. Its only requests are the page's range reads of data shares from storage servers
// (storage index, share number and byte range: nothing secret), so that share bytes never pass
// through the page.
'use strict';

let scratch = null;

/** 16-byte big-endian counter block of file offset `offset` (a multiple of 16). */
function counterAt(offset) {
  const c = new Uint8Array(16);
  let n = BigInt(offset) / 16n;
  for (let i = 15; i >= 0 && n > 0n; i--) {
    c[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return c;
}

async function digests(prefix, bytes, segSize) {
  const need = prefix.length + Math.min(segSize, bytes.length);
  if (!scratch || scratch.length < need) scratch = new Uint8Array(need);
  scratch.set(prefix);
  const out = [];
  for (let o = 0; o < bytes.length; o += segSize) {
    const seg = bytes.subarray(o, Math.min(o + segSize, bytes.length));
    scratch.set(seg, prefix.length);
    // WebCrypto copies its input when called: the scratch buffer is free again at once.
    out.push(crypto.subtle.digest('SHA-256', scratch.subarray(0, prefix.length + seg.length)));
  }
  const all = new Uint8Array(out.length * 32);
  (await Promise.all(out)).forEach((d, i) => all.set(new Uint8Array(d), i * 32));
  return all;
}

/**
 * Joins the blocks of segments `a..b` read from the k data shares (`shares[i]`: the blocks of
 * share i back to back from byte `blockPrefix.length` on, each segment's block `blockSize` bytes
 * apart) into `out` (from byte `segPrefix.length` on, padding cut) and hashes each joined segment;
 * with `hashBlocks` also each block (to tell which share is wrong; the segment hashes alone
 * decide integrity). The hash prefixes are written just before the bytes hashed and the bytes
 * they cover put back at once: WebCrypto copies its input when called, so nothing is copied for
 * hashing. Resolves to the block digests (segment by segment, share by share), the segment
 * digests and the number of ciphertext bytes joined.
 */
async function blocks(m, shares, out) {
  const { a, b, k, segSize, fileSize, blockSize, blockPrefix, segPrefix, hashBlocks } = m;
  const hb = blockPrefix.length;
  const hs = segPrefix.length;
  const bd = new Uint8Array(hashBlocks ? (b - a) * k * 32 : 0);
  const sd = new Uint8Array((b - a) * 32);
  const pending = [];
  const keepB = new Uint8Array(hb);
  const keepS = new Uint8Array(hs);
  const lastLen = Math.min(segSize, fileSize - (b - 1) * segSize);
  const need = hb + (b - a - 1) * blockSize + Math.ceil(lastLen / k);
  shares.forEach((buf, i) => {
    if (buf.length < need) throw new Error(`the buffer of share ${i} holds ${buf.length} bytes, fewer than the ${need} segments ${a}..${b} need`);
  });
  if (out.length < hs + (b - a) * segSize) throw new Error(`the output buffer holds ${out.length} bytes, fewer than segments ${a}..${b} need`);
  let o = hs;
  for (let j = a; j < b; j++) {
    const len = Math.min(segSize, fileSize - j * segSize);
    const bs = Math.ceil(len / k);
    const segStart = o;
    for (let i = 0; i < k; i++) {
      const buf = shares[i];
      const p = hb + (j - a) * blockSize;
      if (hashBlocks) {
        keepB.set(buf.subarray(p - hb, p));
        buf.set(blockPrefix, p - hb);
        const slot = ((j - a) * k + i) * 32;
        pending.push(crypto.subtle.digest('SHA-256', buf.subarray(p - hb, p + bs)).then((d) => bd.set(new Uint8Array(d), slot)));
        buf.set(keepB, p - hb);
      }
      const n = Math.min(bs, segStart + len - o);
      if (n > 0) {
        out.set(buf.subarray(p, p + n), o);
        o += n;
      }
    }
    keepS.set(out.subarray(segStart - hs, segStart));
    out.set(segPrefix, segStart - hs);
    const slot = (j - a) * 32;
    pending.push(crypto.subtle.digest('SHA-256', out.subarray(segStart - hs, segStart + len)).then((d) => sd.set(new Uint8Array(d), slot)));
    out.set(keepS, segStart - hs);
  }
  await Promise.all(pending);
  return { blockDigests: bd, segmentDigests: sd, len: o - hs };
}

/**
 * The blocks of one batch from each data share: `urls[i]` (a storage server's
 * `/storage/v1/immutable/<si>/<i>`), bytes `from .. offset + length` of every share, each body
 * read whole by the browser (`arrayBuffer()`: far cheaper than reading it piece by piece). Each
 * resolves to a buffer with the blocks from byte `room` on. Only the storage index, share
 * numbers and ranges leave this worker.
 */
function fetchShares({ urls, offset, length, room }) {
  const from = Math.max(0, offset - room);
  return Promise.all(urls.map(async (url) => {
    let resp;
    try {
      resp = await fetch(url, { cache: 'no-store', headers: { Range: `bytes=${from}-${offset + length - 1}` } });
    } catch (err) {
      throw new Error(`a storage server could not be reached (${err.message})`);
    }
    if (resp.status !== 206) throw new Error(`a storage server answered ${resp.status} to a range request`);
    let buf = new Uint8Array(await resp.arrayBuffer());
    if (buf.length !== offset + length - from) {
      throw new Error(`a storage server sent ${buf.length} bytes for a range of ${offset + length - from}`);
    }
    if (from > offset - room) {
      // The first block of the file: fewer bytes than the room precede it in the share.
      const b2 = new Uint8Array(room + length);
      b2.set(buf.subarray(offset - from), room);
      buf = b2;
    }
    return buf;
  }));
}

self.onmessage = async (e) => {
  const { id, op, bytes } = e.data;
  try {
    if (op === 'digest') {
      const d = await digests(e.data.prefix, bytes, e.data.segSize);
      self.postMessage({ id, digests: d, bytes }, [d.buffer, bytes.buffer]);
    } else if (op === 'blocks') {
      const { out } = e.data;
      const shares = await fetchShares(e.data);
      const r = await blocks(e.data, shares, out);
      // The share buffers stay here (garbage now); the joined ciphertext goes back.
      self.postMessage({ id, ...r, out }, [r.blockDigests.buffer, r.segmentDigests.buffer, out.buffer]);
    } else if (op === 'decrypt') {
      const alg = { name: 'AES-CTR', counter: counterAt(e.data.offset), length: 128 };
      // `bytes` may be a view into a larger buffer (a joined batch after its hash prefix).
      const plain = await crypto.subtle.encrypt(alg, e.data.key, bytes);
      self.postMessage({ id, plain, bytes }, [plain, bytes.buffer]);
    } else {
      throw new Error(`unknown operation ${op}`);
    }
  } catch (err) {
    self.postMessage({ id, error: String(err?.message ?? err) });
  }
};
