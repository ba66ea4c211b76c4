//! Loopback ports for test servers: the one place every test and harness asks the kernel for a free port.

use std::net::TcpListener;

use crate::{Error, Result};

/// A TCP port on 127.0.0.1 that was free a moment ago: the kernel picks it (bind to port 0) and the
/// listener is closed at once, so a child process (Postgres, the registry, a `fathom` service) can bind
/// it. Another program may take it in between; the harnesses that start servers retry on that.
pub fn free_port() -> Result<u16> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| Error::Harness(format!("no free TCP port on 127.0.0.1: {e}")))
}
