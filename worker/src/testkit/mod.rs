//! Test and bench support: building images in-process (OCI layouts, docker archives, registry pushes),
//! a local registry shared by all test processes of a run, and child-process measurement.
//!
//! Public (not `cfg(test)`) because integration tests of this crate, the worker tests and the benches of
//! the root package all use it; nothing here runs in production paths.

pub mod floor;
pub mod image;
pub mod measure;
pub mod push;
pub mod registry;
pub mod validate;

pub use image::{BuiltImage, BuiltLayer, Compress, LayoutEntry};
pub use push::Pusher;
