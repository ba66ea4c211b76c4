//! Runs a child process and reports its wall time and peak resident memory (from `wait4`'s rusage).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How a measured child process ended.
#[derive(Debug)]
pub struct Measured {
    /// Wall time from spawn to exit.
    pub wall: Duration,
    /// Peak resident set size in bytes.
    pub peak_rss: u64,
    /// Exit code (None when killed by a signal).
    pub code: Option<i32>,
    /// Captured stdout.
    pub stdout: Vec<u8>,
    /// Captured stderr.
    pub stderr: Vec<u8>,
}

/// Runs `cmd` to completion with stdout/stderr captured (read on threads so pipes never fill).
pub fn run(mut cmd: Command) -> std::io::Result<Measured> {
    use std::io::Read;
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let out_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_end(&mut buf);
        }
        buf
    });
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_end(&mut buf);
        }
        buf
    });
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child, which std has not reaped.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let stdout = out_thread.join().unwrap_or_default();
    let stderr = err_thread.join().unwrap_or_default();
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Ok(Measured {
        wall,
        peak_rss: usage.ru_maxrss.max(0) as u64 * 1024,
        code,
        stdout,
        stderr,
    })
}

/// Returns freed heap to the OS. A child's peak RSS as `wait4` reports it starts at the parent's RSS at
/// fork time (Linux carries the pre-exec high-water mark over), so a parent that held large buffers must
/// release them before spawning measured children.
pub fn release_memory() {
    // SAFETY: malloc_trim only walks glibc's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
