//! The Debian-like base layer shared by the Debian sample images: a dpkg `status` of a real bookworm
//! minbase install (88 packages), os-release, per-package docs and dpkg info files, and executables.

use super::large::code_like_bytes;
use super::{dir, exec, file, symlink, SampleEntry};

/// One dpkg record of the table below.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deb {
    pub name: &'static str,
    pub version: &'static str,
    /// The `Source:` field (empty when the source package has the binary's name).
    pub source: &'static str,
    pub arch: &'static str,
    pub size: &'static str,
    pub priority: &'static str,
    pub section: &'static str,
    pub synopsis: &'static str,
}

/// Debian bookworm minbase as debootstrap installs it (88 packages, tab-separated).
const BOOKWORM_MINBASE_TSV: &str = include_str!("bookworm-minbase.tsv");

/// The parsed table; the file is ours and fixed, so a malformed row is skipped rather than reported.
pub(crate) fn bookworm_minbase() -> Vec<Deb> {
    BOOKWORM_MINBASE_TSV
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let f: Vec<&'static str> = l.split('\t').collect();
            (f.len() == 8).then(|| Deb {
                name: f[0],
                version: f[1],
                source: f[2],
                arch: f[3],
                size: f[4],
                priority: f[5],
                section: f[6],
                synopsis: f[7],
            })
        })
        .collect()
}

/// Packages the "apt-get remove" layer of `debian-python-npm` takes out again.
pub(crate) const REMOVED_LATER: &[&str] = &["e2fsprogs", "logsave"];

/// One stanza in dpkg's own field order.
fn stanza(d: &Deb) -> String {
    let Deb {
        name,
        version,
        source,
        arch,
        size,
        priority,
        section,
        synopsis,
    } = *d;
    let mut s = format!("Package: {name}\nStatus: install ok installed\n");
    if priority == "required" {
        s.push_str("Essential: yes\n");
    }
    s.push_str(&format!(
        "Priority: {priority}\nSection: {section}\nInstalled-Size: {size}\n"
    ));
    s.push_str("Maintainer: Debian Base Maintainers <debian-boot@lists.debian.org>\n");
    s.push_str(&format!("Architecture: {arch}\n"));
    if section == "libs" && arch != "all" {
        s.push_str("Multi-Arch: same\n");
    }
    if !source.is_empty() {
        s.push_str(&format!("Source: {source}\n"));
    }
    s.push_str(&format!("Version: {version}\n"));
    if name != "libc6" && name != "gcc-12-base" {
        s.push_str("Depends: libc6 (>= 2.34)\n");
    }
    if section == "admin" || priority == "required" {
        s.push_str(&format!(
            "Conffiles:\n /etc/{name}.conf 5d41402abc4b2a76b9719d911017c592\n"
        ));
    }
    s.push_str(&format!(
        "Description: {synopsis}\n This package provides {name} for the Debian base system.\n .\n \
         It is part of the minimal installation created by debootstrap.\nHomepage: https://packages.debian.org/{name}\n"
    ));
    s
}

/// A dpkg `status` for `packages` (stanzas separated by blank lines, as dpkg writes it).
pub(crate) fn dpkg_status(packages: &[&Deb]) -> Vec<u8> {
    packages
        .iter()
        .map(|d| stanza(d))
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

/// Debian 12's os-release, byte for byte.
pub(crate) const OS_RELEASE: &str =
    "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
VERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n\
HOME_URL=\"https://www.debian.org/\"\nSUPPORT_URL=\"https://www.debian.org/support\"\n\
BUG_REPORT_URL=\"https://bugs.debian.org/\"\n";

/// The base layer: ~1,100 entries, a few MiB.
pub fn debian_base_layer() -> Vec<SampleEntry> {
    let base = bookworm_minbase();
    let mut e = vec![
        dir("/etc"),
        dir("/usr"),
        dir("/usr/bin"),
        dir("/usr/lib"),
        dir("/usr/share"),
        dir("/usr/share/doc"),
        dir("/usr/share/man"),
        dir("/usr/share/man/man1"),
        dir("/var"),
        dir("/var/lib"),
        dir("/var/lib/dpkg"),
        dir("/var/lib/dpkg/info"),
        symlink("/bin", "usr/bin"),
        symlink("/lib", "usr/lib"),
        file("/usr/lib/os-release", OS_RELEASE.as_bytes()),
        symlink("/etc/os-release", "../usr/lib/os-release"),
        file("/etc/debian_version", b"12.12\n"),
        file("/etc/hostname", b"localhost\n"),
        file(
            "/etc/passwd",
            b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n",
        ),
        file(
            "/var/lib/dpkg/status",
            &dpkg_status(&base.iter().collect::<Vec<_>>()),
        ),
    ];
    for (i, d) in base.iter().enumerate() {
        let name = d.name;
        let doc = format!("/usr/share/doc/{name}");
        e.push(dir(&doc));
        let copyright = format!(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: {name}\n\n\
             Files: *\nCopyright: 1990-2023 The {name} authors\nLicense: GPL-2+\n"
        );
        e.push(file(&format!("{doc}/copyright"), copyright.as_bytes()));
        e.push(file(
            &format!("{doc}/changelog.Debian.gz"),
            &code_like_bytes(800 + i * 13, i as u64 + 7),
        ));
        let list = format!("/.\n/usr\n/usr/share\n/usr/share/doc\n{doc}\n{doc}/copyright\n");
        e.push(file(
            &format!("/var/lib/dpkg/info/{name}.list"),
            list.as_bytes(),
        ));
        let sums = format!("0f343b0931126a20f133d67c2b018a3b  usr/share/doc/{name}/copyright\n");
        e.push(file(
            &format!("/var/lib/dpkg/info/{name}.md5sums"),
            sums.as_bytes(),
        ));
        // Executables (not ELF: the binary catalogers must skip them cheaply) and man pages.
        for j in 0..3 {
            let bin = format!("/usr/bin/{name}-tool{j}");
            e.push(exec(
                &bin,
                &code_like_bytes(6_000 + (i * 977 + j * 131) % 40_000, (i * 3 + j) as u64),
            ));
            e.push(file(
                &format!("/usr/share/man/man1/{name}-tool{j}.1.gz"),
                &code_like_bytes(1_200, (i * 7 + j) as u64),
            ));
        }
    }
    e
}
