//! Grid client logic for lafs, free of IO and of any async runtime.
//!
//! The pieces here decide *what* to send to *which* storage server; drivers (native in
//! `server/`, wasm in the browser) move the bytes.
//!
//! * [`placement`]: rendezvous (highest-random-weight) ordering of servers by a file's
//!   server-selection index, and share placement with "servers of happiness" semantics.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod placement;

/// Everything that can go wrong in client planning.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not enough distinct servers could take shares to reach the happiness threshold.
    #[error(
        "not enough servers: {reachable} server(s) reachable and accepting shares, the upload \
         would be spread over {achieved}, but {needed} are needed (happiness)"
    )]
    NotHappy {
        /// Servers that answered and accept shares.
        reachable: usize,
        /// Distinct servers the best placement reaches.
        achieved: usize,
        /// The happiness threshold.
        needed: usize,
    },
    /// Encoding parameters that cannot work (e.g. happy > N, k > happy).
    #[error("invalid placement parameters: {0}")]
    BadParams(&'static str),
}
