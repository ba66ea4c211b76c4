//! A real ClamAV `clamd` for tests (Debian package `clamav-daemon`), like the throwaway Postgres: its own
//! temporary directory, its own `clamd.conf` (`Foreground yes`, a unix socket and a TCP port on
//! loopback), and a signature database the test writes — never a downloaded one, never freshclam.
//!
//! Signatures are ClamAV's `.ndb` body signatures (`Name:0:*:HEX`): any file containing the bytes matches,
//! wherever they sit in it, so a planted marker deep in a large file also proves the file was streamed
//! whole. clamd reports them with `.UNOFFICIAL` appended (a database not signed by ClamAV).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// A running clamd; stopped (and its directory removed) when dropped.
pub struct Clamd {
    child: Child,
    dir: tempfile_dir::TempDir,
    /// Its unix socket.
    pub socket: PathBuf,
    /// Its TCP address (`127.0.0.1:PORT`).
    pub tcp: String,
}

/// The clamd binary: `$FATHOM_CLAMD`, else Debian's `/usr/sbin/clamd`, else `clamd` on `PATH`.
fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("FATHOM_CLAMD") {
        return p.into();
    }
    let debian = Path::new("/usr/sbin/clamd");
    if debian.exists() {
        return debian.into();
    }
    "clamd".into()
}

impl Clamd {
    /// Starts clamd on a database of `.ndb` signatures, each `(name, bytes)`, and waits until it answers
    /// `PING` (loading a tiny database takes about a second).
    pub fn start(signatures: &[(&str, &[u8])]) -> Result<Clamd> {
        Clamd::start_with(signatures, "")
    }

    /// [`Clamd::start`] with more `clamd.conf` lines (e.g. `StreamMaxLength 1M`).
    pub fn start_with(signatures: &[(&str, &[u8])], extra_conf: &str) -> Result<Clamd> {
        let dir = tempfile_dir::TempDir::new("fathom-clamd")?;
        let db = dir.path().join("db");
        std::fs::create_dir_all(&db)?;
        let lines: Vec<String> = signatures
            .iter()
            .map(|(name, bytes)| format!("{name}:0:*:{}", hex::encode(bytes)))
            .collect();
        std::fs::write(db.join("fathom-test.ndb"), lines.join("\n") + "\n")?;
        let socket = dir.path().join("clamd.sock");
        let port = crate::free_port()?;
        let conf = dir.path().join("clamd.conf");
        std::fs::write(
            &conf,
            format!(
                "DatabaseDirectory {}\nLocalSocket {}\nTCPSocket {port}\nTCPAddr 127.0.0.1\n\
                 Foreground yes\nLogFile {}\nPidFile {}\n{extra_conf}\n",
                db.display(),
                socket.display(),
                dir.path().join("clamd.log").display(),
                dir.path().join("clamd.pid").display(),
            ),
        )?;
        let child = Command::new(binary())
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                Error::Harness(format!(
                    "cannot start clamd ({}): {e}; install Debian's clamav-daemon (scripts/deps.d/clamav.sh)",
                    binary().display()
                ))
            })?;
        let mut clamd = Clamd {
            child,
            dir,
            socket,
            tcp: format!("127.0.0.1:{port}"),
        };
        clamd.wait_ready()?;
        Ok(clamd)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Error::Harness(format!(
                    "clamd exited ({status}) while starting: {}",
                    self.log()
                )));
            }
            if ping(&self.socket) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Harness(format!(
                    "clamd did not answer PING within 60s: {}",
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// clamd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("clamd.log")).unwrap_or_default()
    }

    /// Stops clamd now (the test's "clamd is down").
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ping(socket: &Path) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut reply = [0u8; 16];
    s.write_all(b"zPING\0").is_ok()
        && s.read(&mut reply)
            .is_ok_and(|n| reply[..n].starts_with(b"PONG"))
}

impl Drop for Clamd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A temporary directory removed on drop (the crate has no tempfile dependency).
mod tempfile_dir {
    use std::path::{Path, PathBuf};

    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(prefix: &str) -> std::io::Result<TempDir> {
            let path = std::env::temp_dir().join(format!(
                "{prefix}-{}-{}",
                std::process::id(),
                rand::random::<u64>()
            ));
            std::fs::create_dir_all(&path)?;
            Ok(TempDir(path))
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
