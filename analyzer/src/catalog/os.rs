//! Package URLs of OS packages, which depend on the image's distro (a fact from another file).
//!
//! A cataloger sees one file, so dpkg, apk and rpm build their purls without the distro (namespace from the
//! ecosystem's usual vendor, no `distro=` qualifier). Once the merge knows the final distro it calls
//! [`apply_distro`] to rewrite them the way Syft writes them:
//! `pkg:deb/debian/libc6@2.36-9?arch=amd64&distro=debian-12&upstream=glibc`.

use crate::model::{Distro, Package, PackageType};

/// Metadata key holding the package architecture (`amd64`, `x86_64`, `noarch`).
pub const META_ARCH: &str = "arch";
/// Metadata key holding the source package (`glibc`, `glibc@2.36-9`, `bash-5.1.8-6.el9.src.rpm`).
pub const META_UPSTREAM: &str = "upstream";
/// Metadata key holding the rpm epoch when the package has one.
pub const META_EPOCH: &str = "epoch";

/// Rewrites the purl of every deb, apk and rpm package for `distro` (namespace = distro id, `distro=ID-VERSION`
/// qualifier). Other packages are left alone. With `None` the purls keep their distro-less defaults.
pub fn apply_distro(packages: &mut [Package], distro: Option<&Distro>) {
    for p in packages.iter_mut() {
        if let Some(purl) = os_purl(p, distro) {
            p.purl = purl;
        }
    }
}

/// The purl of an OS package, or `None` for other package types.
pub(crate) fn os_purl(p: &Package, distro: Option<&Distro>) -> Option<String> {
    let (ty, default_ns) = match p.package_type {
        PackageType::Deb => ("deb", "debian"),
        PackageType::Apk => ("apk", "alpine"),
        PackageType::Rpm => ("rpm", ""),
        _ => return None,
    };
    let namespace = distro
        .map(|d| d.id.as_str())
        .filter(|id| !id.is_empty())
        .unwrap_or(default_ns);
    let distro_q = distro
        .filter(|d| !d.id.is_empty())
        .map(|d| {
            if d.version_id.is_empty() {
                d.id.clone()
            } else {
                format!("{}-{}", d.id, d.version_id)
            }
        })
        .unwrap_or_default();
    let meta = |k: &str| p.metadata.get(k).map(String::as_str).unwrap_or("");
    let epoch = meta(META_EPOCH);
    // rpm carries the epoch as a qualifier, not inside the purl version.
    let version = match (p.package_type, epoch.is_empty()) {
        (PackageType::Rpm, false) => p
            .version
            .strip_prefix(&format!("{epoch}:"))
            .unwrap_or(&p.version),
        _ => &p.version,
    };
    let qualifiers = [
        ("arch", meta(META_ARCH)),
        ("epoch", epoch),
        ("upstream", meta(META_UPSTREAM)),
        ("distro", distro_q.as_str()),
    ];
    Some(super::util::purl(
        ty,
        Some(namespace),
        &p.name,
        version,
        &qualifiers,
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn pkg(ty: PackageType, name: &str, version: &str, meta: &[(&str, &str)]) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            package_type: ty,
            purl: String::new(),
            licenses: vec![],
            locations: vec![],
            found_by: "test".into(),
            metadata: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn deb_purl_gets_distro_namespace_and_qualifier() {
        let mut ps = vec![
            pkg(
                PackageType::Deb,
                "libc6",
                "2.36-9+deb12u4",
                &[("arch", "amd64"), ("upstream", "glibc")],
            ),
            pkg(PackageType::Python, "click", "8.1.7", &[]),
        ];
        ps[1].purl = "pkg:pypi/click@8.1.7".into();
        let d = Distro {
            id: "debian".into(),
            version_id: "12".into(),
            ..Default::default()
        };
        apply_distro(&mut ps, Some(&d));
        assert_eq!(
            ps[0].purl,
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12&upstream=glibc"
        );
        assert_eq!(ps[1].purl, "pkg:pypi/click@8.1.7");
    }

    #[test]
    fn rpm_epoch_moves_to_a_qualifier() {
        let mut ps = vec![pkg(
            PackageType::Rpm,
            "tzdata",
            "1:2024a-1",
            &[("arch", "noarch"), ("epoch", "1")],
        )];
        apply_distro(&mut ps, None);
        assert_eq!(ps[0].purl, "pkg:rpm/tzdata@2024a-1?arch=noarch&epoch=1");
    }
}
