//! fathom's analyzer engine: image sources, the streaming layer pipeline, catalogers, the merge, SBOM writers.
//!
//! Overview: an [`Analyzer`] (catalogers + [`AnalyzerOptions`]) turns an [`ImageSource`] into an
//! [`ImageAnalysis`]. It resolves the manifest ([`source`]), asks a [`LayerCache`] for each layer, streams
//! the missing ones through [`layer`] (digest check, inflate, tar walk, catalogers) on rayon, and applies
//! the layer results in order ([`merge`]). [`sbom::write`] renders the analysis.
//!
//! The engine knows no database, HTTP server, metrics registry or job queue: the worker service calls it
//! and implements [`LayerCache`] over its store. That boundary is this crate's dependency list.
#![deny(missing_docs)]

pub mod analyze;
pub mod cache;
pub mod catalog;
pub mod content;
pub mod error;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod layer;
pub mod merge;
pub mod model;
pub mod sbom;
pub mod source;

pub use analyze::{Analyzer, AnalyzerOptions, ImageAnalysis};
pub use cache::{LayerCache, LayerClaim, MemoryCache, NoCache};
pub use error::AnalyzeError;
pub use source::ImageSource;
