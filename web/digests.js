// Block digests of segments with WebCrypto, shared by the page (files.js) and its crypto
// workers (crypto-worker.js).

/**
 * The digests of the k data blocks of each `segSize` piece (segment) of `bytes`, what a segment's
 * ciphertext-tree leaf is made of (docs/spec/immutable.md §3): a segment of `len` bytes is cut
 * into k blocks of `b = ceil(len / k)` bytes, the last ones zero-padded to `b` (a block may be all
 * padding), and each is hashed as SHA-256(prefix ‖ block). Resolves to the 32-byte digests
 * segment by segment, block by block, in one array.
 *
 * WebCrypto copies its input when called, so a whole block is hashed in place: the prefix is
 * written over the bytes just before it and those are put back at once. The first block of
 * `bytes` (nothing before it) and a short block (its padding) go through `scratch.buf`, grown
 * when too small and kept for the next call.
 */
export async function blockDigests(prefix, bytes, segSize, k, scratch = {}) {
  const hp = prefix.length;
  const count = Math.ceil(bytes.length / segSize);
  const all = new Uint8Array(count * k * 32);
  const need = hp + Math.ceil(Math.min(segSize, bytes.length) / k);
  if (!scratch.buf || scratch.buf.length < need) scratch.buf = new Uint8Array(need);
  const buf = scratch.buf;
  buf.set(prefix);
  const keep = new Uint8Array(hp);
  const pending = [];
  for (let s = 0, o = 0; o < bytes.length; s++, o += segSize) {
    const len = Math.min(segSize, bytes.length - o);
    const b = Math.ceil(len / k);
    for (let i = 0; i < k; i++) {
      const start = o + Math.min(i * b, len);
      const end = o + Math.min((i + 1) * b, len);
      const slot = (s * k + i) * 32;
      const done = (d) => all.set(new Uint8Array(d), slot);
      if (end - start === b && start >= hp) {
        keep.set(bytes.subarray(start - hp, start));
        bytes.set(prefix, start - hp);
        pending.push(crypto.subtle.digest('SHA-256', bytes.subarray(start - hp, end)).then(done));
        bytes.set(keep, start - hp);
      } else {
        buf.set(bytes.subarray(start, end), hp);
        buf.fill(0, hp + end - start, hp + b);
        pending.push(crypto.subtle.digest('SHA-256', buf.subarray(0, hp + b)).then(done));
      }
    }
  }
  await Promise.all(pending);
  return all;
}
