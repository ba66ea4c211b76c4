//! fathom's analyzer: image sources, the streaming layer pipeline, catalogers, the merge, SBOM writers.
#![deny(missing_docs)]

pub mod catalog;
pub mod model;
pub mod samples;
