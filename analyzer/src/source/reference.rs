//! Image references: the workspace's one parser, `fathom_reference`, re-exported where the registry
//! client has always found it.

pub use fathom_reference::ImageRef;
