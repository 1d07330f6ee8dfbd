//! The lafs WebAssembly API: what the web app (`web/`) and the browser extension call.
//!
//! This crate wraps the pure crates in a small [wasm-bindgen] interface. Everything runs inside
//! the page, so a cap handed to it (a secret: a readcap holds the file's key) never leaves the
//! tab. Only `LafsGrid` (wasm32 only) does IO: it is a grid client whose `fetch` transport talks to
//! the storage servers directly and sends them storage indexes, ciphertext and signed shares,
//! never a cap or key. The other functions are plain Rust functions on native targets too, which
//! is how they are unit-tested ([`DirSession`], the logic behind `LafsGrid`, on the simulated
//! grid).
//!
//! What exists today:
//!
//! | JS name | Rust | what it does |
//! |---|---|---|
//! | `parseCap(text)` | [`parse_cap`] | parses a cap's text form → [`CapInfo`] (kind, what it grants, storage index, derived verifycap) |
//! | `parseShareLink(fragment)` | [`parse_share_link`] | splits a share link's URL fragment (`#<cap>[&grid=…]`) → [`ShareLink`] |
//! | `taggedHashHex(tag, data)` | [`tagged_hash_hex`] | lafs' domain-separated SHA-256 (`docs/spec/hashtree.md`) |
//! | `merkleRootHex(leaves)` | [`merkle_root_hex`] | root of the lafs hash tree over 32-byte leaf hashes |
//! | `version()` | [`version`] | this crate's version |
//! | `new FileReader(readcap)` | [`FileReader`] | checks a file's UEB, proofs and segments against the cap, decrypts (the page fetches from the gateway's `/ciphertext` endpoints) |
//! | `blockHashPrefix()` | [`block_hash_prefix`] | the bytes before a block in its hash, for hashing the data blocks of segments with WebCrypto (`FileReader.verifyDigests`, `DirectReader.verifySegments`) |
//! | `new DirectReader(verifycap)` | [`DirectReader`] | checks data shares read straight from storage servers: trailers (UEB, chain, trees), then the block digests computed by the page (`blockHashPrefix()`) |
//! | `new FileWriter()` | [`FileWriter`] | random key, encryption, readcap from the gateway's verifycap (`PUT /ciphertext`) |
//! | `LafsGrid.connect(gatewayUrl)` | `LafsGrid` (wasm32) | → `Promise<LafsGrid>`: the storage servers from the gateway's `GET /grid/servers`, a fresh random ed25519 account key for signed writes |
//! | `grid.openDir(dircap)` | [`DirSession::open`] | → `Promise<string>`: the listing as JSON at the cap's level (write, read, traverse: no names, verify: no entries) |
//! | `grid.mkdir(dirWriteCap, name)` | [`DirSession::mkdir`] | → `Promise<string>`: creates and links a new folder, its write cap |
//! | `grid.addFile(dirWriteCap, name, bytes)` | [`DirSession::add_file`] | → `Promise<string>`: encrypts and uploads in the tab, links the file (`{"size": N}` metadata), its readcap |
//! | `grid.linkFile(dirWriteCap, name, fileCap, size)` | [`DirSession::link_file`] | → `Promise<string>`: links a file already stored (e.g. through the gateway's upload session) with `{"size": N}` metadata; a folder of that name is not replaced |
//! | `grid.startUpload(dirWriteCap, name)` | [`DirSession::start_upload`] | → [`DirUpload`] as `LafsUpload`: `await up.write(bytes)` piece by piece, `await up.finish()` → the readcap, linked into the directory (memory does not grow with the file) |
//! | `grid.startFileUpload()` | [`DirSession::start_file_upload`] | → `LafsUpload` as above for a file linked nowhere: encrypted, erasure-coded and hashed in the tab, shares straight to the storage servers |
//! | `grid.openFile(cap)` | [`DirSession::open_file`] | → `Promise<LafsFile>` ([`GridFile`]): `file.size`, and `file.stream(start?, end?)` → a `ReadableStream` of `Uint8Array` pieces of that byte range, each verified against the cap and decrypted before it is enqueued (by WebCrypto when it matches lafs' AES-CTR on a test vector, else in Rust: `file.crypto`), fetched from the storage servers as the stream is read |
//! | `introducerServers(body)` | [`introducer_server_list`] | the body of an introducer's `GET /v1/servers` → the `/grid/servers` JSON of the servers whose signed announcements verify (for self-contained links) |
//! | `LafsGrid.fromServerList(json)` | `LafsGrid` (wasm32) | a `LafsGrid` over a `/grid/servers`-shaped list, no request |
//! | `grid.readFile(cap)` | [`DirSession::read_file`] | → `Promise<Uint8Array>`: a whole immutable, literal or mutable file, verified and decrypted |
//! | `grid.createDir()` | [`DirSession::create_dir`] | → `Promise<string>`: a new unlinked directory's write cap |
//! | `info.readOnlyCap`, `info.traverseCap` | [`CapInfo`] | a write cap's read cap; a directory's traversal cap (derived in the tab) |
//!
//! # Errors in JavaScript
//!
//! Functions that can fail throw a [`LafsError`] object (not a JS `Error`): it has a stable,
//! machine-readable `code` (for example `"bad-checksum"`) and a human-readable `message`, and
//! `String(e)` gives the message.
//!
//! ```js
//! import init, { parseCap } from './lafs_wasm.js';
//! await init();
//! try {
//!   const cap = parseCap(location.hash.slice(1));
//!   console.log(cap.kind, cap.storageIndex, cap.verifyCap);
//! } catch (e) {
//!   console.log(e.code, e.message);
//! }
//! ```
//!
//! # Reading and writing files from another page or an extension
//!
//! `LafsGrid` needs only a gateway's public server list; everything else goes to the storage
//! servers, and the cap stays in the tab. A file as a stream (here into a `Response`, e.g. to
//! save it or to answer a fetch from a service worker), and an upload:
//!
//! ```js
//! import init, { LafsGrid } from './lafs_wasm.js';
//! await init();
//! const grid = await LafsGrid.connect('http://127.0.0.1:3456');
//! const file = await grid.openFile(readCap);        // trailers checked against the cap
//! const whole = new Response(file.stream());         // verified, decrypted, pulled as read
//! const middle = file.stream(1_000_000, 2_000_000);  // any byte range, its own download
//! try {
//!   for await (const piece of middle) console.log(piece.length);
//! } catch (e) {
//!   console.log(e.code);                             // "integrity": nothing of it delivered
//! }
//! const up = grid.startFileUpload();                 // encrypted and erasure-coded in the tab
//! await up.write(new Uint8Array(await blob.arrayBuffer()));
//! const newCap = await up.finish();                  // its read cap (lafsr1… or lafsl1…)
//! ```
//!
//! # Rust
//!
//! ```
//! let cap = lafs_wasm::parse_cap(
//!     "lafsr1qqqsyqcyq5rqwzqfpg9scrgwpugpzysnzs23v9ccrydpk8qarc0jqgfzyvjz2f389q5j52ev95hz7f6ss9h",
//! )?;
//! assert_eq!(cap.kind(), "readcap");
//! assert_eq!(
//!     cap.verify_cap().as_deref(),
//!     Some("lafsv1zqg3yyc5z5tpwxqergd3c8g7ruszzg3rysjjvfeg9y4zktpd9ch7rjsjvs8ckmmpp9zu2lvz8j3vsdq8kz9"),
//! );
//! # Ok::<(), lafs_wasm::LafsError>(())
//! ```
//!
//! With the `app` feature on `wasm32`, the crate also carries the web app's user interface
//! (a `#[wasm_bindgen(start)]` entry point that drives `web/index.html`).
//!
//! [wasm-bindgen]: https://rustwasm.github.io/docs/wasm-bindgen/
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(all(feature = "app", target_arch = "wasm32"))]
mod app;
mod cap;
mod checks;
mod direct;
mod dirs;
mod error;
mod file;
#[cfg(target_arch = "wasm32")]
mod grid;
mod hash;

pub use cap::{parse_cap, parse_share_link, CapInfo, ShareLink};
pub use direct::{block_hash_prefix, DirectReader, MAX_DIRECT_TRAILER};
pub use dirs::{
    introducer_server_list, parse_server_list, split_base, CiphertextPieces, DirSession, DirUpload,
    GridFile,
};
pub use error::{Error, LafsError};
pub use file::{FileReader, FileWriter, MAX_HELD_PROOFS, MAX_PROVEN_LEAVES};
#[cfg(target_arch = "wasm32")]
pub use grid::{introducer_servers, LafsGrid};
pub use hash::{merkle_root_hex, tagged_hash_hex};

use wasm_bindgen::prelude::wasm_bindgen;

/// The version of this crate (the lafs release), e.g. `"0.1.0"`.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}
