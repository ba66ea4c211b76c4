//! One throwaway cluster per test run, shared by every test process.
//!
//! cargo-nextest runs each test in its own process, so "start once per run" needs coordination between
//! processes, done with two lock files in a fixed directory that is never removed:
//! - `users.lock`: every process using the cluster holds a *shared* lock on it for its whole life. The
//!   kernel drops the lock when the process exits, however it exits (panic, abort, kill -9).
//! - `setup.lock`: held *exclusively* while a process checks for, starts, or templates the cluster.
//!
//! The first process to find no running cluster starts one and spawns a detached watchdog. The watchdog
//! stops the cluster and removes its data once it can take `users.lock` exclusively for several seconds in a
//! row (no test process alive), which bridges the short gaps between nextest's processes.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::pg::cluster::{ClusterInfo, Durability, PgBinaries};
use crate::{Error, Result};

/// Seconds the watchdog waits with no user before stopping the cluster.
const IDLE_GRACE_SECS: u32 = 5;

/// A process's handle on the shared cluster: holds the shared lock for the life of the process.
#[derive(Debug)]
pub struct SharedCluster {
    info: ClusterInfo,
    base: PathBuf,
    _users: File,
}

static SHARED: OnceLock<std::result::Result<SharedCluster, String>> = OnceLock::new();

impl SharedCluster {
    /// The run's shared cluster, started on first use by whichever process gets there first.
    pub fn get() -> Result<&'static SharedCluster> {
        SHARED
            .get_or_init(|| Self::join_or_start().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| Error::Harness(e.clone()))
    }

    /// Where the cluster lives and how to reach it.
    pub fn info(&self) -> &ClusterInfo {
        &self.info
    }

    /// Runs `f` while holding the cross-process setup lock (used to build database templates once).
    pub fn with_setup_lock<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        let lock = open_lock(&self.base.join("setup.lock"))?;
        lock.lock().map_err(|e| lock_err("setup.lock", e))?;
        let out = f();
        drop(lock);
        Ok(out)
    }

    fn join_or_start() -> Result<SharedCluster> {
        let base = base_dir();
        fs::create_dir_all(&base)
            .map_err(|e| Error::Harness(format!("create {}: {e}", base.display())))?;
        let users = open_lock(&base.join("users.lock"))?;
        users.lock_shared().map_err(|e| lock_err("users.lock", e))?;
        let setup = open_lock(&base.join("setup.lock"))?;
        setup.lock().map_err(|e| lock_err("setup.lock", e))?;

        let binaries = PgBinaries::locate()?;
        let info_path = base.join("cluster.json");
        let info = match read_info(&info_path) {
            Some(info) if binaries.is_running(&info) => info,
            stale => {
                if let Some(old) = stale {
                    let _ = fs::remove_dir_all(&old.dir);
                }
                let dir = base.join(format!("cluster-{}", std::process::id()));
                let _ = fs::remove_dir_all(&dir);
                let info = binaries.start(&dir, Durability::Throwaway)?;
                write_info(&info_path, &info)?;
                spawn_watchdog(&base, &binaries, &info)?;
                info
            }
        };
        drop(setup);
        Ok(SharedCluster {
            info,
            base,
            _users: users,
        })
    }
}

fn base_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FATHOM_TEST_PG_DIR") {
        return PathBuf::from(dir);
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    std::env::temp_dir().join(format!("fathom-test-pg-{uid}"))
}

fn open_lock(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| Error::Harness(format!("open {}: {e}", path.display())))
}

fn lock_err(name: &str, err: std::io::Error) -> Error {
    Error::Harness(format!("lock {name}: {err}"))
}

fn read_info(path: &Path) -> Option<ClusterInfo> {
    let text = fs::read_to_string(path).ok()?;
    let (port, dir) = text.trim().split_once(' ')?;
    Some(ClusterInfo {
        dir: PathBuf::from(dir),
        port: port.parse().ok()?,
    })
}

fn write_info(path: &Path, info: &ClusterInfo) -> Result<()> {
    fs::write(path, format!("{} {}\n", info.port, info.dir.display()))
        .map_err(|e| Error::Harness(format!("write {}: {e}", path.display())))
}

/// Starts the detached shell loop that stops the cluster once nobody uses it.
fn spawn_watchdog(base: &Path, binaries: &PgBinaries, info: &ClusterInfo) -> Result<()> {
    let users = base.join("users.lock");
    let stop = binaries.stop_command_line(&info.dir);
    let script = format!(
        r#"
idle=0
while sleep 1; do
  [ -d '{dir}/data' ] || exit 0
  if flock -n -x '{users}' true; then idle=$((idle+1)); else idle=0; fi
  if [ "$idle" -ge {grace} ]; then
    flock -n -x '{users}' sh -c "{stop} >/dev/null 2>&1; rm -rf '{dir}' '{info}'" && exit 0
    idle=0
  fi
done
"#,
        dir = info.dir.display(),
        users = users.display(),
        grace = IDLE_GRACE_SECS,
        stop = stop.replace('"', "\\\""),
        info = base.join("cluster.json").display(),
    );
    Command::new("setsid")
        .args(["-f", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            Error::Harness(format!(
                "could not start the cluster watchdog (setsid/flock from util-linux): {e}"
            ))
        })?
        .wait()
        .map_err(|e| Error::Harness(format!("cluster watchdog: {e}")))?;
    Ok(())
}
