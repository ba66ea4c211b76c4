//! A real registry (Debian's `docker-registry`, the CNCF distribution server) on loopback for tests.
//!
//! [`shared`] gives every test process of a run the same registry: the first process to take the lock
//! file starts it; each process then holds a shared `flock` for its lifetime; a detached watchdog stops
//! the registry and removes its directory once nobody has held the lock for a few seconds. cargo-nextest
//! runs each test in its own process, so this is what keeps one registry per run instead of one per test.
//! [`Registry::start_private`] starts a registry owned by one test (e.g. with htpasswd auth), stopped on
//! drop.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Seconds without any lock holder before the watchdog stops the shared registry.
const IDLE_SECONDS: u32 = 3;

/// A running registry.
#[derive(Debug)]
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Its working directory (config, data, log).
    pub dir: PathBuf,
    child: Option<Child>,
}

static SHARED: OnceLock<Result<(Registry, File), String>> = OnceLock::new();

/// The registry shared by all test processes of this run, started on first use.
pub fn shared() -> Result<&'static Registry, String> {
    SHARED
        .get_or_init(start_or_join)
        .as_ref()
        .map(|(registry, _lock)| registry)
        .map_err(Clone::clone)
}

fn start_or_join() -> Result<(Registry, File), String> {
    let tmp = std::env::temp_dir();
    let lock_path = tmp.join("fathom-test-registry.lock");
    let dir = tmp.join("fathom-test-registry");
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("{}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("flock {}: {e}", lock_path.display()))?;
    let state = dir.join("state");
    let existing = std::fs::read_to_string(&state)
        .ok()
        .and_then(|s| s.lines().next().map(str::to_string))
        .filter(|addr| healthy(addr));
    let addr = match existing {
        Some(addr) => addr,
        None => {
            let _ = std::fs::remove_dir_all(&dir);
            let mut registry = spawn(&dir, None)?;
            let pid = registry.child.as_ref().map(|c| c.id()).unwrap_or(0);
            // The shared registry outlives this process; the watchdog owns its end.
            registry.child = None;
            std::fs::write(&state, format!("{}\n{pid}\n", registry.addr))
                .map_err(|e| format!("{}: {e}", state.display()))?;
            spawn_watchdog(&lock_path, &dir, pid)?;
            registry.addr.clone()
        }
    };
    // Downgrade to shared: other test processes may join, and the watchdog sees the registry is in use.
    lock.lock_shared()
        .map_err(|e| format!("flock {}: {e}", lock_path.display()))?;
    Ok((
        Registry {
            addr,
            dir,
            child: None,
        },
        lock,
    ))
}

fn spawn_watchdog(lock: &Path, dir: &Path, pid: u32) -> Result<(), String> {
    let script = format!(
        r#"idle=0
while kill -0 {pid} 2>/dev/null; do
  sleep 1
  if flock -n -x "$0" true; then idle=$((idle+1)); else idle=0; fi
  if [ "$idle" -ge {IDLE_SECONDS} ]; then
    flock -n -x "$0" sh -c 'kill {pid}; rm -rf "$0"' "$1" && exit 0
    idle=0
  fi
done"#
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(lock)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map(|_| ())
        .map_err(|e| {
            format!("cannot start the registry watchdog (needs sh and flock from util-linux): {e}")
        })
}

impl Registry {
    /// Starts a registry owned by the caller (stopped on drop), optionally requiring basic auth with the
    /// given `htpasswd` file contents (bcrypt lines, as `htpasswd -Bbn user pass` prints).
    pub fn start_private(htpasswd: Option<&str>) -> Result<Registry, String> {
        let dir = std::env::temp_dir().join(format!(
            "fathom-private-registry-{}-{}",
            std::process::id(),
            unique()
        ));
        spawn(&dir, htpasswd)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn spawn(dir: &Path, htpasswd: Option<&str>) -> Result<Registry, String> {
    std::fs::create_dir_all(dir.join("data")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut last_error = String::new();
    for _ in 0..3 {
        let addr = format!(
            "127.0.0.1:{}",
            crate::free_port().map_err(|e| e.to_string())?
        );
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            dir.join("data").display()
        );
        if let Some(lines) = htpasswd {
            let file = dir.join("htpasswd");
            std::fs::write(&file, lines).map_err(|e| format!("{}: {e}", file.display()))?;
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: fathom-test\n    path: {}\n",
                file.display()
            ));
        }
        let config_path = dir.join("config.yml");
        std::fs::write(&config_path, config)
            .map_err(|e| format!("{}: {e}", config_path.display()))?;
        let log = File::create(dir.join("log")).map_err(|e| format!("{}: {e}", dir.display()))?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .spawn()
            .map_err(|e| {
                format!("cannot run docker-registry ({e}); install it: apt-get install docker-registry (see scripts/deps.d/20-analyzer.sh)")
            })?;
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if answers(&addr) {
                return Ok(Registry {
                    addr,
                    dir: dir.to_path_buf(),
                    child: Some(child),
                });
            }
            if let Ok(Some(status)) = child.try_wait() {
                last_error = format!(
                    "docker-registry exited with {status}: {}",
                    std::fs::read_to_string(dir.join("log")).unwrap_or_default()
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        if last_error.is_empty() {
            last_error = format!("docker-registry did not answer on {addr} within 15 s");
        }
    }
    Err(last_error)
}

/// Status line of `GET /v2/`, if the server answers.
fn status(addr: &str) -> Option<u16> {
    let mut stream =
        TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(format!("GET /v2/ HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .ok()?;
    let mut head = [0u8; 32];
    let n = stream.read(&mut head).ok()?;
    let text = std::str::from_utf8(&head[..n]).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

/// Any HTTP answer (401 included: an auth-protected registry is up too).
fn answers(addr: &str) -> bool {
    status(addr).is_some()
}

fn healthy(addr: &str) -> bool {
    status(addr) == Some(200)
}
