//! fathom worker crate (skeleton; filled by its issue).
#![deny(missing_docs)]
