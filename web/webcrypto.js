// WebCrypto for the page: AES-128-CTR with lafs' counter layout, and the check that decides
// whether the page uses WebCrypto at all. Imported by files.js, upload.js and crypto-worker.js
// (aesCtr only: the rest needs the page).

import { blockDigests } from './digests.js';

function wasm() {
  return window.wasmBindings;
}

// AES-128-CTR through WebCrypto (≈3.5× the pure-Rust wasm AES, docs/performance.md) when the
// browser has it and it gives the same keystream as the wasm code; else the wasm path. Open the
// page with `?crypto=wasm` to force the wasm path.
let webCryptoCheck = null;

/** The 16-byte big-endian counter block of file offset `offset` (a multiple of 16). */
function counterAt(offset) {
  const c = new Uint8Array(16);
  let n = BigInt(offset) / 16n;
  for (let i = 15; i >= 0 && n > 0n; i--) {
    c[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return c;
}

/** A non-extractable AES-CTR key from `raw` (which is zeroed). */
export async function importAesKey(raw) {
  try {
    return await crypto.subtle.importKey('raw', raw, 'AES-CTR', false, ['encrypt', 'decrypt']);
  } finally {
    raw.fill(0);
  }
}

/** `data` as the bytes at `offset`, XORed with the file's keystream (WebCrypto). */
export async function aesCtr(key, offset, data) {
  const alg = { name: 'AES-CTR', counter: counterAt(offset), length: 128 };
  return new Uint8Array(await crypto.subtle.encrypt(alg, key, data));
}

/** Whether to use WebCrypto: available, not disabled, and agreeing with wasm on a test vector. */
export function useWebCrypto() {
  webCryptoCheck ??= (async () => {
    if (new URLSearchParams(location.search).get('crypto') === 'wasm') return false;
    if (!globalThis.crypto?.subtle) return false;
    const w = new (wasm().FileWriter)();
    try {
      const key = await importAesKey(w.webCryptoKey());
      const data = new Uint8Array(80).map((_, i) => i * 3);
      const ours = w.encrypt(48, data.slice());
      const theirs = await aesCtr(key, 48, data);
      const same = (x, y) => x.length === y.length && x.every((b, i) => b === y[i]);
      // Block hashes: SHA-256 of the tag prefix and the block must be lafs' tagged hash. 80
      // bytes in 3 blocks of 27: one hashed from the scratch buffer, one in place, one padded.
      const prefix = wasm().blockHashPrefix();
      const tag = new TextDecoder().decode(prefix.subarray(1));
      const before = data.slice();
      const digests = await blockDigests(prefix, data, data.length, 3);
      const padded = new Uint8Array(81);
      padded.set(data);
      const want = [0, 27, 54].map((o) => wasm().taggedHashHex(tag, padded.subarray(o, o + 27))).join('');
      const hex = [...digests].map((b) => b.toString(16).padStart(2, '0')).join('');
      return same(ours, theirs) && hex === want && same(data, before);
    } catch {
      return false;
    } finally {
      w.free();
    }
  })();
  return webCryptoCheck;
}
