//! Test and bench support: building images in-process and a shared local registry.
