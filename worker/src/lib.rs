//! fathom's analyzer: image sources, the streaming layer pipeline, catalogers, the merge, SBOM writers.
//!
//! Overview: an [`Analyzer`] (catalogers + [`AnalyzerOptions`]) turns an [`ImageSource`] into an
//! [`ImageAnalysis`]. It resolves the manifest ([`source`]), asks a [`LayerCache`] for each layer, streams
//! the missing ones through [`layer`] (digest check, inflate, tar walk, catalogers) on rayon, and applies
//! the layer results in order ([`merge`]). [`sbom::write`] renders the analysis. [`testkit`] builds
//! images and runs a local registry for tests and benches.
#![deny(missing_docs)]

pub mod analyze;
pub mod cache;
pub mod catalog;
pub mod config;
pub mod error;
pub mod job;
pub mod layer;
pub mod merge;
pub mod metrics;
pub mod model;
pub mod samples;
pub mod sbom;
pub mod source;
pub mod store;
pub mod testkit;

pub use analyze::{Analyzer, AnalyzerOptions, ImageAnalysis};
pub use cache::{LayerCache, LayerClaim, MemoryCache, NoCache};
pub use error::AnalyzeError;
pub use source::ImageSource;
