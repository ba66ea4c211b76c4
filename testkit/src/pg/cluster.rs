//! Throwaway PostgreSQL clusters started from the installed server binaries.
//!
//! Postgres refuses to run as root, and CI runs as root: when we are root, every server command runs as the
//! `postgres` user through `runuser`, and the cluster directory is handed to that user.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{Error, Result};

/// How a cluster is tuned: tests trade durability for speed, the demo keeps the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `fsync`, `synchronous_commit` and `full_page_writes` off: for tests only.
    Throwaway,
    /// The server's defaults.
    Durable,
}

/// A running cluster: where it lives and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// Directory holding `data/`, the unix socket and the server log.
    pub dir: PathBuf,
    /// TCP port on 127.0.0.1 (the unix socket file is named after it too).
    pub port: u16,
}

impl ClusterInfo {
    /// Connection URL for `database` over the unix socket, as superuser `postgres` (trust auth).
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@localhost:{}/{}?host={}",
            self.port,
            database,
            self.dir.display()
        )
    }

    /// Connection URL for `database` over TCP on 127.0.0.1, for tools that cannot use a socket.
    pub fn tcp_url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{}", self.port, database)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
}

/// The installed server binaries and the user to run them as.
#[derive(Debug, Clone)]
pub struct PgBinaries {
    bin_dir: PathBuf,
    run_as_postgres: bool,
}

impl PgBinaries {
    /// Finds `initdb`/`pg_ctl`: `$FATHOM_PG_BIN`, then PostgreSQL 15's Debian path, then any version.
    pub fn locate() -> Result<Self> {
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(dir) = std::env::var_os("FATHOM_PG_BIN") {
            candidates.push(PathBuf::from(dir));
        }
        candidates.push(PathBuf::from("/usr/lib/postgresql/15/bin"));
        if let Ok(entries) = fs::read_dir("/usr/lib/postgresql") {
            let mut versions: Vec<PathBuf> =
                entries.flatten().map(|e| e.path().join("bin")).collect();
            versions.sort();
            candidates.extend(versions.into_iter().rev());
        }
        let bin_dir = candidates
            .into_iter()
            .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
            .ok_or_else(|| {
                Error::Harness(
                    "PostgreSQL server binaries not found: run `apt-get install postgresql-15` \
                     (or set FATHOM_PG_BIN, or DATABASE_URL to use an existing server)"
                        .into(),
                )
            })?;
        let run_as_postgres = is_root();
        if run_as_postgres && postgres_uid_gid().is_none() {
            return Err(Error::Harness(
                "running as root but there is no `postgres` user to run the server as: \
                 run `apt-get install postgresql-15` (it creates the user)"
                    .into(),
            ));
        }
        Ok(Self {
            bin_dir,
            run_as_postgres,
        })
    }

    fn command(&self, tool: &str) -> Command {
        let program = self.bin_dir.join(tool);
        if self.run_as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        }
    }

    /// The shell command line that stops a cluster in `dir`; the watchdog of the shared cluster runs it.
    pub(crate) fn stop_command_line(&self, dir: &Path) -> String {
        let pg_ctl = self.bin_dir.join("pg_ctl");
        let data = dir.join("data");
        let prefix = if self.run_as_postgres {
            "runuser -u postgres -- "
        } else {
            ""
        };
        format!(
            "{prefix}'{}' -D '{}' -m immediate -w stop",
            pg_ctl.display(),
            data.display()
        )
    }

    /// Creates and starts a cluster in `dir` (which must not hold one yet) on a free port.
    pub fn start(&self, dir: &Path, durability: Durability) -> Result<ClusterInfo> {
        fs::create_dir_all(dir).map_err(|e| harness_io("create cluster dir", dir, e))?;
        if self.run_as_postgres {
            if let Some((uid, gid)) = postgres_uid_gid() {
                std::os::unix::fs::chown(dir, Some(uid), Some(gid))
                    .map_err(|e| harness_io("hand the cluster dir to postgres", dir, e))?;
            }
        }
        let port = crate::free_port()?;
        let info = ClusterInfo {
            dir: dir.to_path_buf(),
            port,
        };
        let data = info.data_dir();
        run(self
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
            .args(["--locale", "C"]))?;

        self.launch(&info, durability)?;
        Ok(info)
    }

    /// Starts the server of an initialized cluster (again) on its port and socket directory.
    fn launch(&self, info: &ClusterInfo, durability: Durability) -> Result<()> {
        let dir = &info.dir;
        let port = info.port;
        let data = info.data_dir();
        let mut options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c max_connections=400 \
             -c shared_buffers=128MB -c max_locks_per_transaction=256",
            dir.display()
        );
        if durability == Durability::Throwaway {
            options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("server.log"))
            .args(["-o", &options, "-w", "-t", "60", "start"]))
        .map_err(|e| {
            let log = fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            Error::Harness(format!("{e}; server log:\n{log}"))
        })?;
        Ok(())
    }

    /// Whether the cluster in `info` is running (its postmaster answers `pg_ctl status`).
    pub fn is_running(&self, info: &ClusterInfo) -> bool {
        self.command("pg_ctl")
            .arg("-D")
            .arg(info.data_dir())
            .arg("status")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Stops the cluster at once and removes its directory.
    pub fn stop_and_remove(&self, info: &ClusterInfo) -> Result<()> {
        let _ = run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(info.data_dir())
            .args(["-m", "fast", "-w", "stop"]));
        fs::remove_dir_all(&info.dir).map_err(|e| harness_io("remove cluster dir", &info.dir, e))
    }
}

/// A cluster this process started and owns: stopped and removed when dropped (the demo uses one).
#[derive(Debug)]
pub struct OwnedCluster {
    binaries: PgBinaries,
    info: ClusterInfo,
    durability: Durability,
}

impl OwnedCluster {
    /// Starts a fresh cluster in a new directory under the system temp dir.
    pub fn start(durability: Durability) -> Result<Self> {
        let binaries = PgBinaries::locate()?;
        let dir = std::env::temp_dir().join(format!(
            "fathom-pg-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let info = binaries.start(&dir, durability)?;
        Ok(Self {
            binaries,
            info,
            durability,
        })
    }

    /// Stops the server (fast shutdown: connections are cut), keeping its data, e.g. to test how clients
    /// ride out a database restart.
    pub fn stop(&self) -> Result<()> {
        run(self
            .binaries
            .command("pg_ctl")
            .arg("-D")
            .arg(self.info.data_dir())
            .args(["-m", "fast", "-w", "stop"]))
    }

    /// Starts the server again after [`OwnedCluster::stop`], on the same port and socket.
    pub fn start_again(&self) -> Result<()> {
        self.binaries.launch(&self.info, self.durability)
    }

    /// Where the cluster lives and how to reach it.
    pub fn info(&self) -> &ClusterInfo {
        &self.info
    }
}

impl Drop for OwnedCluster {
    fn drop(&mut self) {
        if let Err(err) = self.binaries.stop_and_remove(&self.info) {
            tracing::warn!(%err, "could not remove the throwaway cluster");
        }
    }
}

fn run(cmd: &mut Command) -> Result<()> {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Harness(format!("could not run {cmd:?}: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::Harness(format!(
            "{cmd:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}

fn harness_io(what: &str, path: &Path, err: std::io::Error) -> Error {
    Error::Harness(format!("{what} {}: {err}", path.display()))
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// uid and gid of the `postgres` user, read from `/etc/passwd`.
fn postgres_uid_gid() -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != "postgres" {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}
