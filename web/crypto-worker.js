// A dedicated worker of the lafs page (files.js) that runs WebCrypto for it: segment hashes and
// AES-CTR decryption of ciphertext batches. WebCrypto work from one JS context runs one operation
// at a time, so two of these workers hash and decrypt two batches at once.
//
// It decides nothing: the page checks the hashes against the file's hash tree (in wasm) before it
// asks for a decryption. The key arrives as a non-extractable CryptoKey from the page and is never
// sent anywhere; this worker makes no request.
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

self.onmessage = async (e) => {
  const { id, op, bytes } = e.data;
  try {
    if (op === 'digest') {
      const d = await digests(e.data.prefix, bytes, e.data.segSize);
      self.postMessage({ id, digests: d, bytes }, [d.buffer, bytes.buffer]);
    } else if (op === 'decrypt') {
      const alg = { name: 'AES-CTR', counter: counterAt(e.data.offset), length: 128 };
      const plain = await crypto.subtle.encrypt(alg, e.data.key, bytes);
      self.postMessage({ id, plain, bytes }, [plain, bytes.buffer]);
    } else {
      throw new Error(`unknown operation ${op}`);
    }
  } catch (err) {
    self.postMessage({ id, error: String(err?.message ?? err) });
  }
};
