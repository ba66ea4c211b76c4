//! Malware scanning through ClamAV's `clamd`: each regular file of a layer (up to a size cap) is streamed
//! to clamd with its `INSTREAM` command while the tar walk passes it, in chunks, so memory stays bounded
//! whatever the file's size.
//!
//! The protocol: `zINSTREAM\0`, then chunks each prefixed by its length (4 bytes, big-endian), then a
//! zero length; clamd answers `stream: OK\0` or `stream: NAME FOUND\0` (or `... ERROR\0`). One connection
//! per file: clamd closes an INSTREAM connection after its answer.
//!
//! Every failure — clamd unreachable, slower than the timeout, an answer that is not one of those — is a
//! [`ScanError::Scanner`]: the layer's analysis fails (retryably) rather than recording a scan that did not
//! happen, so an image is never reported clean because the scanner was down.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Bytes sent per INSTREAM chunk (and the most a scan holds of a file it streams from the tar).
pub const CHUNK: usize = 64 * 1024;

/// Longest answer read from clamd: real ones are a signature name long.
const MAX_REPLY: usize = 4096;

/// The scanner name the `malware` gate reports, as anchore's clamav analyzer names it.
pub const SCANNER: &str = "clamav";

/// Where clamd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClamdAddress {
    /// `host:port` (`tcp://host:port` accepted).
    Tcp(String),
    /// A unix socket path (`unix:/path` or an absolute path).
    Unix(PathBuf),
}

impl std::str::FromStr for ClamdAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(path) = s.strip_prefix("unix:") {
            let path = path.trim_start_matches("//");
            if path.starts_with('/') {
                return Ok(ClamdAddress::Unix(path.into()));
            }
            return Err(format!(
                "{s:?}: a unix socket needs an absolute path (unix:/run/clamav/clamd.ctl)"
            ));
        }
        if s.starts_with('/') {
            return Ok(ClamdAddress::Unix(s.into()));
        }
        let hostport = s.strip_prefix("tcp://").unwrap_or(s);
        match hostport.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
                Ok(ClamdAddress::Tcp(hostport.to_string()))
            }
            _ => Err(format!(
                "{s:?}: want host:port (127.0.0.1:3310), tcp://host:port or unix:/path/to/clamd.sock"
            )),
        }
    }
}

impl std::fmt::Display for ClamdAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClamdAddress::Tcp(a) => write!(f, "tcp://{a}"),
            ClamdAddress::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Malware scanning settings (`services.analyzer.malware`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalwareOptions {
    /// clamd's address.
    pub clamd: ClamdAddress,
    /// Files larger than this are not scanned (clamd's own `StreamMaxLength` must be at least this).
    pub max_file_size: u64,
    /// How long one file's scan may take, connection and answer included.
    pub timeout: Duration,
}

/// What clamd said of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing found.
    Clean,
    /// A signature matched (its name).
    Found(String),
}

/// Why a file could not be scanned.
#[derive(Debug)]
pub enum ScanError {
    /// Reading the file itself failed (the layer's problem, not the scanner's).
    Source(io::Error),
    /// clamd could not be reached, was too slow or answered something else than a verdict.
    Scanner(String),
}

/// A stream to clamd over TCP or a unix socket.
enum Conn {
    Tcp(TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Conn {
    fn set_timeout(&self, t: Duration) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => {
                s.set_read_timeout(Some(t))?;
                s.set_write_timeout(Some(t))
            }
            Conn::Unix(s) => {
                s.set_read_timeout(Some(t))?;
                s.set_write_timeout(Some(t))
            }
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A clamd client: cheap, shared by the layer threads (each scan opens its own connection).
#[derive(Debug, Clone)]
pub struct Clamd {
    options: MalwareOptions,
}

impl Clamd {
    /// A client for these options.
    pub fn new(options: MalwareOptions) -> Clamd {
        Clamd { options }
    }

    /// The options.
    pub fn options(&self) -> &MalwareOptions {
        &self.options
    }

    fn connect(&self, deadline: Instant) -> Result<Conn, String> {
        let left = remaining(deadline).ok_or("timed out connecting")?;
        let conn = match &self.options.clamd {
            ClamdAddress::Tcp(a) => {
                let addrs = a
                    .to_socket_addrs()
                    .map_err(|e| format!("cannot resolve {a}: {e}"))?;
                let mut last = format!("{a} resolves to no address");
                let mut found = None;
                for addr in addrs {
                    match TcpStream::connect_timeout(&addr, left) {
                        Ok(s) => {
                            found = Some(s);
                            break;
                        }
                        Err(e) => last = format!("cannot connect: {e}"),
                    }
                }
                Conn::Tcp(found.ok_or(last)?)
            }
            ClamdAddress::Unix(p) => Conn::Unix(
                std::os::unix::net::UnixStream::connect(p)
                    .map_err(|e| format!("cannot connect: {e}"))?,
            ),
        };
        conn.set_timeout(left)
            .map_err(|e| format!("setting the socket timeout: {e}"))?;
        Ok(conn)
    }

    /// Streams `len` bytes of `source` to clamd and returns its verdict. `chunk` is the transfer buffer
    /// (at most [`CHUNK`] of it is used).
    pub fn scan<R: Read>(
        &self,
        source: &mut R,
        len: u64,
        chunk: &mut [u8],
    ) -> Result<Verdict, ScanError> {
        let deadline = Instant::now() + self.options.timeout;
        let fail =
            |what: String| ScanError::Scanner(format!("clamd at {}: {what}", self.options.clamd));
        let mut conn = self.connect(deadline).map_err(fail)?;
        let size = chunk.len().min(CHUNK);
        let chunk = &mut chunk[..size];
        let mut sent = 0u64;
        let mut write_failed = None;
        if let Err(e) = conn.write_all(b"zINSTREAM\0") {
            write_failed = Some(e);
        }
        while write_failed.is_none() && sent < len {
            let want = chunk.len().min((len - sent) as usize);
            let n = match source.read(&mut chunk[..want]) {
                Ok(0) => {
                    return Err(ScanError::Source(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("file ends after {sent} of {len} bytes"),
                    )))
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ScanError::Source(e)),
            };
            sent += n as u64;
            let Some(left) = remaining(deadline) else {
                return Err(fail(format!(
                    "no answer within {:?} (timeout)",
                    self.options.timeout
                )));
            };
            let _ = conn.set_timeout(left);
            let header = (n as u32).to_be_bytes();
            if let Err(e) = conn
                .write_all(&header)
                .and_then(|()| conn.write_all(&chunk[..n]))
            {
                write_failed = Some(e);
            }
        }
        if write_failed.is_none() {
            if let Err(e) = conn.write_all(&[0, 0, 0, 0]) {
                write_failed = Some(e);
            }
        }
        // clamd answers even when it stopped reading early (a size limit): the answer says why, so it is
        // read whether or not the writes went through.
        let reply = read_reply(&mut conn, deadline);
        match (reply, write_failed) {
            (Ok(reply), _) if !reply.is_empty() => parse_reply(&reply).map_err(fail),
            (Err(e), _) if is_timeout(&e) => Err(fail(format!(
                "no answer within {:?} (timeout)",
                self.options.timeout
            ))),
            (_, Some(e)) if is_timeout(&e) => Err(fail(format!(
                "no answer within {:?} (timeout)",
                self.options.timeout
            ))),
            (_, Some(e)) => Err(fail(format!("sending the file failed: {e}"))),
            (Err(e), None) => Err(fail(format!("reading the answer failed: {e}"))),
            (Ok(_), None) => Err(fail("closed the connection without an answer".into())),
        }
    }
}

fn remaining(deadline: Instant) -> Option<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    (!left.is_zero()).then_some(left)
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Reads the answer up to its NUL terminator (or the connection's end), at most [`MAX_REPLY`] bytes.
fn read_reply(conn: &mut Conn, deadline: Instant) -> io::Result<String> {
    let mut reply = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let Some(left) = remaining(deadline) else {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline"));
        };
        conn.set_timeout(left)?;
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                reply.extend_from_slice(&buf[..n]);
                if reply.contains(&0) || reply.len() >= MAX_REPLY {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let end = reply.iter().position(|&b| b == 0).unwrap_or(reply.len());
    reply.truncate(end.min(MAX_REPLY));
    Ok(String::from_utf8_lossy(&reply).trim().to_string())
}

/// `stream: OK` → clean; `stream: NAME FOUND` → found; anything else is an error quoting the answer.
pub fn parse_reply(reply: &str) -> Result<Verdict, String> {
    let shown: String = reply.chars().take(200).collect();
    if reply.contains("size limit exceeded") {
        return Err(format!(
            "clamd refused the file ({shown:?}): its StreamMaxLength is below \
             services.analyzer.malware.max_file_size; raise one or lower the other"
        ));
    }
    let Some(rest) = reply.strip_prefix("stream: ") else {
        return Err(format!("unexpected answer {shown:?} (is this clamd?)"));
    };
    if rest == "OK" {
        return Ok(Verdict::Clean);
    }
    if let Some(name) = rest.strip_suffix(" FOUND") {
        let name = name.trim();
        if !name.is_empty() && !name.contains(['\n', '\r']) {
            return Ok(Verdict::Found(name.to_string()));
        }
    }
    if rest.ends_with(" ERROR") {
        return Err(format!("scan error: {shown:?}"));
    }
    Err(format!("unexpected answer {shown:?} (is this clamd?)"))
}

/// A file a scan flagged in one layer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MalwareFinding {
    /// File path.
    pub path: String,
    /// The signature clamd named.
    pub signature: String,
}

/// One layer's malware scan: present only when every file under the cap was scanned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerMalwareScan {
    /// The scanner ([`SCANNER`]).
    pub scanner: String,
    /// Files flagged.
    pub findings: Vec<MalwareFinding>,
    /// Files scanned.
    pub scanned: u64,
    /// Files over `max_file_size`, not scanned.
    pub skipped_large: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_or_say_what_is_wanted() {
        assert_eq!(
            "127.0.0.1:3310".parse::<ClamdAddress>(),
            Ok(ClamdAddress::Tcp("127.0.0.1:3310".into()))
        );
        assert_eq!(
            "tcp://clamd:3310".parse::<ClamdAddress>(),
            Ok(ClamdAddress::Tcp("clamd:3310".into()))
        );
        assert_eq!(
            "unix:/run/clamav/clamd.ctl".parse::<ClamdAddress>(),
            Ok(ClamdAddress::Unix("/run/clamav/clamd.ctl".into()))
        );
        assert_eq!(
            "/run/clamd.sock".parse::<ClamdAddress>(),
            Ok(ClamdAddress::Unix("/run/clamd.sock".into()))
        );
        for bad in ["clamd", "clamd:0", "clamd:x", "unix:relative", ":3310", ""] {
            assert!(bad.parse::<ClamdAddress>().is_err(), "{bad}");
        }
    }

    #[test]
    fn replies() {
        assert_eq!(parse_reply("stream: OK"), Ok(Verdict::Clean));
        assert_eq!(
            parse_reply("stream: Eicar-Signature FOUND"),
            Ok(Verdict::Found("Eicar-Signature".into()))
        );
        assert!(parse_reply("INSTREAM size limit exceeded. ERROR")
            .unwrap_err()
            .contains("StreamMaxLength"));
        assert!(parse_reply("stream: lstat() failed. ERROR")
            .unwrap_err()
            .contains("scan error"));
        assert!(parse_reply("HTTP/1.1 400 Bad Request").is_err());
        assert!(parse_reply("stream:  FOUND").is_err());
    }
}
