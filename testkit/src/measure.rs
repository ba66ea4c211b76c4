//! Runs a child process and reports its wall time and peak resident memory.
//!
//! Peak memory is the child's own `VmHWM` from `/proc/PID/status`, polled while it runs. `wait4`'s
//! `ru_maxrss` cannot be used: Linux carries the pre-exec high-water mark of the forked child (a copy of the
//! parent, so the parent's whole RSS) into it, and a bench holding images in memory would report its own
//! size for every tool.

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
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak_kib = 0u64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                match vm_hwm_kib(pid) {
                    Some(kib) => peak_kib = peak_kib.max(kib),
                    // Exited (zombie status has no VmHWM) or already reaped.
                    None if peak_kib > 0 => break,
                    None => {}
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            peak_kib
        })
    };
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child, which std has not reaped.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let polled_kib = poller.join().unwrap_or(0);
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let stdout = out_thread.join().unwrap_or_default();
    let stderr = err_thread.join().unwrap_or_default();
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Ok(Measured {
        wall,
        // The rusage figure is only a fallback for children too short-lived to be polled once.
        peak_rss: if polled_kib > 0 {
            polled_kib * 1024
        } else {
            usage.ru_maxrss.max(0) as u64 * 1024
        },
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

/// The `VmHWM` line of `/proc/PID/status`, in KiB.
fn vm_hwm_kib(pid: libc::pid_t) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_child_of_a_big_parent_reports_its_own_peak() {
        // Touch 256 MiB in the parent so a carried-over high-water mark would be obvious.
        let ballast = vec![1u8; 256 << 20];
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 0.2"]);
        let measured = run(cmd).expect("run sh");
        assert_eq!(measured.code, Some(0));
        assert!(
            measured.peak_rss < 64 << 20,
            "peak {} MiB includes the parent's memory",
            measured.peak_rss >> 20
        );
        assert!(ballast.iter().step_by(4096).all(|b| *b == 1));
    }
}
