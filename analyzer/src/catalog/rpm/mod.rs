//! RPM packages from `rpmdb.sqlite` (rpm ≥ 4.16: Fedora 33+, RHEL 9, openSUSE): one header blob per row of
//! the `Packages` table. The database is opened from memory (`sqlite3_deserialize`), never written to disk.

pub(crate) mod header;

use std::ptr::NonNull;

use rusqlite::serialize::OwnedData;
use rusqlite::{Connection, DatabaseName};

use self::header::{
    Header, TAG_ARCH, TAG_EPOCH, TAG_LICENSE, TAG_NAME, TAG_RELEASE, TAG_SOURCERPM, TAG_VERSION,
};
use super::os::{os_purl, META_ARCH, META_EPOCH, META_UPSTREAM};
use super::util::{error, package, sort};
use super::{CatalogError, Cataloger, EntryMeta, FileInput, Found, Want};
use crate::model::{Package, PackageType};

const NAME: &str = "rpm";

/// A full Fedora install's rpmdb.sqlite is ~30 MiB; it is copied once into SQLite's memory, so cap it lower
/// than the text databases.
const MAX_BYTES: u64 = 128 * 1024 * 1024;

/// Reads `rpmdb.sqlite`.
#[derive(Debug, Default, Clone, Copy)]
pub struct RpmCataloger;

impl Cataloger for RpmCataloger {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        1
    }

    fn wants(&self, entry: &EntryMeta<'_>) -> Want {
        // /var/lib/rpm, /usr/lib/sysimage/rpm and /usr/share/rpm are the places rpm keeps its database.
        if entry.path.ends_with("/rpm/rpmdb.sqlite") {
            Want::UpTo {
                max_bytes: MAX_BYTES,
            }
        } else {
            Want::No
        }
    }

    fn catalog(&self, file: &FileInput<'_>) -> Result<Found, CatalogError> {
        let path = file.meta.path;
        if file.bytes.is_empty() {
            return Ok(Found::default());
        }
        let fail = |m: String| error(NAME, path, m);
        let conn = open_from_bytes(file.bytes)
            .map_err(|e| fail(format!("not an SQLite database: {e}")))?;
        let mut stmt = conn
            .prepare("SELECT hnum, blob FROM Packages")
            .map_err(|e| fail(format!("no readable Packages table: {e}")))?;
        let mut rows = stmt.query([]).map_err(|e| fail(e.to_string()))?;
        let mut packages = Vec::new();
        while let Some(row) = rows.next().map_err(|e| fail(e.to_string()))? {
            let hnum: i64 = row.get(0).map_err(|e| fail(e.to_string()))?;
            let blob = row.get_ref(1).and_then(|v| v.as_blob().map_err(Into::into));
            let blob = blob.map_err(|e| fail(format!("package {hnum}: {e}")))?;
            let p = from_header(blob, path).map_err(|m| fail(format!("package {hnum}: {m}")))?;
            packages.extend(p);
        }
        sort(&mut packages);
        Ok(Found {
            packages,
            distro: None,
        })
    }
}

/// A read-only in-memory connection over a copy of `bytes`.
fn open_from_bytes(bytes: &[u8]) -> rusqlite::Result<Connection> {
    let mut conn = Connection::open_in_memory()?;
    let len = bytes.len();
    // SAFETY: sqlite3_malloc64 returns either null (checked) or a buffer of `len` bytes that we fill
    // completely before handing ownership to SQLite, which frees it with sqlite3_free.
    let data = unsafe {
        let ptr = rusqlite::ffi::sqlite3_malloc64(len as u64).cast::<u8>();
        let ptr = NonNull::new(ptr).ok_or(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_NOMEM),
            Some("out of memory copying the database".into()),
        ))?;
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.as_ptr(), len);
        // rpm keeps its database in WAL mode, which SQLite refuses to open from memory; bytes 18/19 of the
        // file header say so. Marking the copy as rollback-journal reads the same pages (what the WAL alone
        // holds was never in this file anyway).
        if len > 19 && *ptr.as_ptr().add(18) == 2 && *ptr.as_ptr().add(19) == 2 {
            *ptr.as_ptr().add(18) = 1;
            *ptr.as_ptr().add(19) = 1;
        }
        OwnedData::from_raw_nonnull(ptr, len)
    };
    conn.deserialize(DatabaseName::Main, data, true)?;
    Ok(conn)
}

/// One package from a header blob. Headers without a name (rpm's own internal records) yield nothing.
fn from_header(blob: &[u8], path: &str) -> Result<Option<Package>, String> {
    let h = Header::parse(blob)?;
    let Some(name) = h.string(TAG_NAME)?.filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    let version = h.string(TAG_VERSION)?.unwrap_or_default();
    let release = h.string(TAG_RELEASE)?.unwrap_or_default();
    let epoch = h.int32(TAG_EPOCH)?;
    // Syft's version: `[epoch:]version-release`.
    let mut full = if release.is_empty() {
        version.to_owned()
    } else {
        format!("{version}-{release}")
    };
    if let Some(e) = epoch {
        full = format!("{e}:{full}");
    }
    let licenses = h
        .string(TAG_LICENSE)?
        .filter(|l| !l.is_empty())
        .map(|l| vec![l.to_owned()])
        .unwrap_or_default();
    let mut p = package(
        NAME,
        PackageType::Rpm,
        name,
        &full,
        String::new(),
        licenses,
        path,
    );
    if let Some(arch) = h.string(TAG_ARCH)?.filter(|a| !a.is_empty()) {
        p.metadata.insert(META_ARCH.into(), arch.to_owned());
    }
    if let Some(e) = epoch {
        p.metadata.insert(META_EPOCH.into(), e.to_string());
    }
    if let Some(src) = h.string(TAG_SOURCERPM)?.filter(|s| !s.is_empty()) {
        p.metadata.insert(META_UPSTREAM.into(), src.to_owned());
    }
    p.purl = os_purl(&p, None).unwrap_or_default();
    Ok(Some(p))
}

/// Writes an `rpmdb.sqlite` with rpm's schema for the given header blobs (samples and tests).
#[cfg(any(test, feature = "fixtures"))]
pub fn write_rpmdb(blobs: &[Vec<u8>]) -> rusqlite::Result<Vec<u8>> {
    let conn = Connection::open_in_memory()?;
    conn.execute_batch(
        "CREATE TABLE 'Packages' (hnum INTEGER PRIMARY KEY AUTOINCREMENT,blob BLOB NOT NULL);
         CREATE TABLE 'Name' (key TEXT NOT NULL,hnum INTEGER NOT NULL,idx INTEGER NOT NULL,
             FOREIGN KEY (hnum) REFERENCES 'Packages'(hnum));
         CREATE INDEX 'Name_key_idx' ON 'Name'(key ASC);",
    )?;
    for blob in blobs {
        conn.execute("INSERT INTO Packages (blob) VALUES (?1)", [blob])?;
        let hnum = conn.last_insert_rowid();
        if let Ok(Some(name)) =
            Header::parse(blob).and_then(|h| h.string(TAG_NAME).map(|n| n.map(str::to_owned)))
        {
            conn.execute(
                "INSERT INTO Name (key, hnum, idx) VALUES (?1, ?2, 0)",
                rusqlite::params![name, hnum],
            )?;
        }
    }
    let data = conn.serialize(DatabaseName::Main)?;
    Ok(data.to_vec())
}

#[cfg(test)]
mod tests {
    use super::header::HeaderBuilder;
    use super::*;

    fn run(bytes: &[u8]) -> Result<Found, CatalogError> {
        let meta = EntryMeta {
            path: "/var/lib/rpm/rpmdb.sqlite",
            mode: 0o644,
            size: bytes.len() as u64,
        };
        assert_ne!(RpmCataloger.wants(&meta), Want::No);
        RpmCataloger.catalog(&FileInput { meta, bytes })
    }

    fn hdr(name: &str, version: &str, release: &str, epoch: Option<u32>) -> Vec<u8> {
        let mut b = HeaderBuilder::default()
            .string(TAG_NAME, name)
            .string(TAG_VERSION, version)
            .string(TAG_RELEASE, release)
            .string(TAG_ARCH, "x86_64")
            .string(TAG_LICENSE, "GPLv3+")
            .string(
                TAG_SOURCERPM,
                &format!("{name}-{version}-{release}.src.rpm"),
            );
        if let Some(e) = epoch {
            b = b.int32(TAG_EPOCH, e);
        }
        b.build()
    }

    #[test]
    fn reads_packages_from_sqlite_db() {
        let db = write_rpmdb(&[
            hdr("bash", "5.1.8", "6.el9", None),
            hdr("openssl-libs", "3.0.7", "25.el9", Some(1)),
        ])
        .unwrap();
        let found = run(&db).unwrap();
        let got: Vec<_> = found
            .packages
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect();
        assert_eq!(
            got,
            [("bash", "5.1.8-6.el9"), ("openssl-libs", "1:3.0.7-25.el9")]
        );
        assert_eq!(
            found.packages[1].purl,
            "pkg:rpm/openssl-libs@3.0.7-25.el9?arch=x86_64&epoch=1&upstream=openssl-libs-3.0.7-25.el9.src.rpm"
        );
    }

    #[test]
    fn wal_mode_database_opens() {
        let mut db = write_rpmdb(&[hdr("bash", "5.1.8", "6.el9", None)]).unwrap();
        db[18] = 2;
        db[19] = 2;
        assert_eq!(run(&db).unwrap().packages.len(), 1);
    }

    #[test]
    fn bogus_header_and_garbage_db_are_errors() {
        let mut bad = hdr("bash", "5.1.8", "6.el9", None);
        bad.truncate(bad.len() - 3);
        let db = write_rpmdb(&[bad]).unwrap();
        let e = run(&db).unwrap_err();
        assert!(e.to_string().contains("package 1"), "{e}");
        assert!(run(b"this is not sqlite at all, just text that is long enough").is_err());
        let e = run(&write_rpmdb(&[]).unwrap()[..100]).unwrap_err();
        assert!(
            e.to_string().starts_with("rpm: /var/lib/rpm/rpmdb.sqlite"),
            "{e}"
        );
    }
}
