//! lafs mutable files: work in progress.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
