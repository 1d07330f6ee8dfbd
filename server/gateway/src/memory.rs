//! [`MemoryGrid`]: shares held in this process, for tests and examples.

use core::ops::Range;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures_util::StreamExt;
use lafs_caps::{Cap, ImmutableReadCap, ImmutableVerifyCap, ReadKey, StorageIndex};
use lafs_codec::{Decoder, Encoder, Ueb, MAX_TRAILER_LEN};
use lafs_proto::ids::storage_index_to_text;

use crate::download::{decode_stream, map_codec, ShareReadFn};
use crate::grid::{
    BoxFuture, ByteStream, Grid, GridError, GridFile, ShareView, UploadMode, UploadSpec, Uploaded,
};

/// Bytes of each share's end given to the decoder with the trailer (like a suffix read).
const SUFFIX_LEN: u64 = 4096;

type Shares = Arc<Vec<Option<Bytes>>>;

/// A grid whose shares live in memory: every upload keeps all N shares. Shares can be
/// dropped or corrupted to exercise the download paths. Cheap to clone (shared state).
///
/// Unlike a real grid it keeps whole shares in memory, so an upload's memory use is the size
/// of its shares; use it for tests only.
#[derive(Clone, Default)]
pub struct MemoryGrid {
    files: Arc<Mutex<HashMap<StorageIndex, Shares>>>,
}

impl MemoryGrid {
    /// An empty grid.
    pub fn new() -> Self {
        Self::default()
    }

    fn get(&self, si: &StorageIndex) -> Option<Shares> {
        self.files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(si)
            .cloned()
    }

    fn update(&self, si: &StorageIndex, f: impl FnOnce(&mut Vec<Option<Bytes>>)) {
        let mut files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(shares) = files.get_mut(si) {
            let mut v = shares.as_ref().clone();
            f(&mut v);
            *shares = Arc::new(v);
        }
    }

    /// Finds the file's shares and checks their trailers (what `open` and `inspect` share).
    fn find(&self, cap: ImmutableVerifyCap) -> Result<Arc<MemoryFile>, GridError> {
        let not_found = || GridError::NotFound {
            storage_index: storage_index_to_text(cap.storage_index()),
        };
        let shares = self.get(cap.storage_index()).ok_or_else(not_found)?;
        let mut decoder = Decoder::for_verify_cap(&cap);
        let mut good = Vec::new();
        for (i, share) in shares.iter().enumerate() {
            let (Some(share), Ok(num)) = (share, u16::try_from(i)) else {
                continue;
            };
            if decoder
                .add_trailer(num, share.len() as u64, suffix(share))
                .is_ok()
            {
                good.push(num);
            }
        }
        let ueb = *decoder.ueb().ok_or_else(not_found)?;
        if good.len() < usize::from(ueb.params.k()) {
            return Err(GridError::NotEnoughShares {
                found: good.len(),
                needed: usize::from(ueb.params.k()),
            });
        }
        Ok(Arc::new(MemoryFile {
            cap,
            ueb,
            shares,
            good,
        }))
    }

    /// Forgets share `share` of the file (as if its server were gone).
    pub fn remove_share(&self, si: &StorageIndex, share: u16) {
        self.update(si, |v| {
            if let Some(s) = v.get_mut(usize::from(share)) {
                *s = None;
            }
        });
    }

    /// Flips one byte of share `share` at `offset` (if the share has that byte).
    pub fn corrupt_share(&self, si: &StorageIndex, share: u16, offset: u64) {
        self.update(si, |v| {
            if let Some(Some(s)) = v.get_mut(usize::from(share)) {
                let mut bytes = s.to_vec();
                if let Some(b) = usize::try_from(offset).ok().and_then(|o| bytes.get_mut(o)) {
                    *b ^= 0x55;
                }
                *s = Bytes::from(bytes);
            }
        });
    }
}

impl Grid for MemoryGrid {
    fn open(&self, cap: Cap) -> BoxFuture<'static, Result<Box<dyn GridFile>, GridError>> {
        let (vc, key) = match &cap {
            Cap::ImmutableRead(r) => (r.verify_cap(), Some(r.key().clone())),
            Cap::ImmutableVerify(v) => (*v, None),
            _ => {
                return Box::pin(async {
                    Err(GridError::Unavailable(
                        "only immutable caps are on the grid".into(),
                    ))
                })
            }
        };
        let found = self.find(vc);
        Box::pin(async move {
            let file: Box<dyn GridFile> = Box::new(MemoryRead { file: found?, key });
            Ok(file)
        })
    }

    fn inspect(
        &self,
        cap: ImmutableVerifyCap,
    ) -> BoxFuture<'static, Result<Arc<dyn ShareView>, GridError>> {
        let found = self.find(cap);
        Box::pin(async move {
            let view: Arc<dyn ShareView> = found?;
            Ok(view)
        })
    }

    fn upload(
        &self,
        spec: UploadSpec,
        mut body: ByteStream,
    ) -> BoxFuture<'static, Result<Uploaded, GridError>> {
        let grid = self.clone();
        Box::pin(async move {
            let n = usize::from(spec.params.n());
            let mut enc = match spec.mode {
                UploadMode::Plaintext(key) => Encoder::new(spec.params, key)?,
                UploadMode::Ciphertext(sel) => Encoder::for_ciphertext(spec.params, sel)?,
            };
            let mut shares = vec![Vec::new(); n];
            let mut store = |enc: &mut Encoder| {
                while let Some(w) = enc.poll_write() {
                    let Some(s) = shares.get_mut(usize::from(w.share)) else {
                        continue;
                    };
                    let (Ok(off), Ok(end)) = (
                        usize::try_from(w.offset),
                        usize::try_from(w.offset + w.data.len() as u64),
                    ) else {
                        continue;
                    };
                    if s.len() < end {
                        s.resize(end, 0);
                    }
                    s[off..end].copy_from_slice(&w.data);
                }
            };
            while let Some(chunk) = body.next().await {
                enc.push(&chunk?)?;
                store(&mut enc);
            }
            let done = enc.finish()?;
            store(&mut enc);
            let shares: Vec<Option<Bytes>> =
                shares.into_iter().map(|s| Some(Bytes::from(s))).collect();
            grid.files
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(done.storage_index, Arc::new(shares));
            Ok(Uploaded {
                read_cap: done.read_cap,
                verify_cap: done.verify_cap,
            })
        })
    }
}

fn suffix(share: &[u8]) -> &[u8] {
    let len = share.len();
    let keep = usize::try_from(SUFFIX_LEN.max(MAX_TRAILER_LEN)).unwrap_or(len);
    &share[len.saturating_sub(keep)..]
}

struct MemoryFile {
    cap: ImmutableVerifyCap,
    ueb: Ueb,
    shares: Shares,
    good: Vec<u16>,
}

impl MemoryFile {
    fn stream(&self, key: Option<ReadKey>, range: Range<u64>) -> ByteStream {
        let mut decoder = match key {
            Some(k) => Decoder::new(&ImmutableReadCap::new(k, *self.cap.storage_index())),
            None => Decoder::for_verify_cap(&self.cap),
        };
        for &s in &self.good {
            if let Some(Some(share)) = self.shares.get(usize::from(s)) {
                // Verified by `inspect`; a failure now only removes the share from this read.
                let _ = decoder.add_trailer(s, share.len() as u64, suffix(share));
            }
        }
        if decoder.ueb().is_none() {
            let e = map_codec(lafs_codec::Error::NotEnoughShares {
                need: self.ueb.params.k(),
                usable: 0,
            });
            return Box::pin(futures_util::stream::once(async move { Err(e) }));
        }
        let shares = Arc::clone(&self.shares);
        let read: ShareReadFn = Arc::new(move |share, ranges| {
            let result = read_ranges(&shares, share, &ranges);
            Box::pin(async move { result })
        });
        decode_stream(decoder, range, read)
    }
}

impl ShareView for MemoryFile {
    fn ueb(&self) -> Ueb {
        self.ueb
    }

    fn shares(&self) -> Vec<u16> {
        self.good.clone()
    }

    fn read_share(
        &self,
        share: u16,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'static, Result<Vec<Bytes>, GridError>> {
        let result = read_ranges(&self.shares, share, &ranges);
        Box::pin(async move { result })
    }
}

struct MemoryRead {
    file: Arc<MemoryFile>,
    key: Option<ReadKey>,
}

impl GridFile for MemoryRead {
    fn size(&self) -> u64 {
        self.file.ueb.file_size
    }

    fn read(self: Box<Self>, range: Range<u64>) -> ByteStream {
        self.file.stream(self.key, range)
    }
}

fn read_ranges(
    shares: &Shares,
    share: u16,
    ranges: &[Range<u64>],
) -> Result<Vec<Bytes>, GridError> {
    let Some(Some(data)) = shares.get(usize::from(share)) else {
        return Err(GridError::Unavailable(format!("share {share} is gone")));
    };
    ranges
        .iter()
        .map(|r| {
            let len = data.len() as u64;
            let (start, end) = (r.start.min(len), r.end.min(len));
            let (Ok(s), Ok(e)) = (usize::try_from(start), usize::try_from(end)) else {
                return Err(GridError::Unavailable("range out of bounds".into()));
            };
            Ok(data.slice(s..e.max(s)))
        })
        .collect()
}
