//! Matching one image's packages against a [`LocalFeed`], in the shape the API answers.

use std::cmp::Ordering;

use super::load::{LocalFeed, Wanted};
use crate::core::ecosystem::{match_key, DistroRef, MatchKey, PackageFacts};
use crate::core::matching::match_version;
use crate::queries::{Fix, MatchedPackage, VulnMatch};

/// One package of the scanned image.
#[derive(Debug, Clone, Copy)]
pub struct ScanPackage<'a> {
    /// What mapping to an OSV key needs.
    pub facts: PackageFacts<'a>,
    /// Digest of the layer that introduced it.
    pub layer: &'a str,
}

/// One match, with the index of its package in the list given to [`LocalFeed::match_packages`] (a
/// CycloneDX writer turns it into the component's `bom-ref`).
#[derive(Debug, Clone, PartialEq)]
pub struct LocalMatch {
    /// Index into the packages.
    pub package: usize,
    /// The match, as `GET /v1/images/{digest}/vulnerabilities` shows it.
    pub vuln: VulnMatch,
}

/// Every match of an image.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LocalMatches {
    /// Ordered like the API: highest CVSS first (unscored last), then id, then package name.
    pub matches: Vec<LocalMatch>,
    /// (package, candidate) pairs whose versions did not parse in the ecosystem's ordering.
    pub undecidable: u64,
}

/// Each package's OSV key (`None`: it has none), and the set of (ecosystem, name) to load.
pub fn match_keys(
    packages: &[ScanPackage<'_>],
    distro: Option<&DistroRef>,
) -> (Vec<Option<MatchKey>>, Wanted) {
    let keys: Vec<Option<MatchKey>> = packages
        .iter()
        .map(|p| match_key(p.facts, distro))
        .collect();
    let wanted = keys
        .iter()
        .flatten()
        .map(|k| (k.ecosystem.clone(), k.name.clone()))
        .collect();
    (keys, wanted)
}

impl LocalFeed {
    /// Matches every package with an OSV key; a package is evaluated once per record (the fleet matcher's
    /// rule), `fix_observed_at` is `None` (no history of earlier feeds without a database).
    pub fn match_packages(
        &self,
        packages: &[ScanPackage<'_>],
        distro: Option<&DistroRef>,
    ) -> LocalMatches {
        let (keys, _) = match_keys(packages, distro);
        let mut out = LocalMatches::default();
        for (i, (p, key)) in packages.iter().zip(&keys).enumerate() {
            let Some(k) = key else { continue };
            let Some(list) = self.by_key.get(&(k.ecosystem.clone(), k.name.clone())) else {
                continue;
            };
            let (hits, undecidable) = match_version(&k.ecosystem, &k.version, list);
            out.undecidable += undecidable;
            for h in hits {
                let c = h.candidate;
                out.matches.push(LocalMatch {
                    package: i,
                    vuln: VulnMatch {
                        id: c.vuln_id.clone(),
                        aliases: c.aliases.clone(),
                        package: MatchedPackage {
                            name: p.facts.name.to_string(),
                            version: p.facts.version.to_string(),
                            package_type: p.facts.package_type.to_string(),
                            purl: p.facts.purl.to_string(),
                            layer: p.layer.to_string(),
                        },
                        namespace: k.ecosystem.clone(),
                        severity: c.severity.clone(),
                        cvss_score: c.cvss_score,
                        fix: Fix {
                            state: h.state.as_str().to_string(),
                            versions: h.fixed,
                        },
                        fix_observed_at: None,
                        urls: c.urls.clone(),
                    },
                });
            }
        }
        out.matches.sort_by(|a, b| {
            let (a, b) = (&a.vuln, &b.vuln);
            let score = match (a.cvss_score, b.cvss_score) {
                (Some(x), Some(y)) => y.partial_cmp(&x).unwrap_or(Ordering::Equal),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            };
            score
                .then_with(|| a.id.cmp(&b.id))
                .then_with(|| a.package.name.cmp(&b.package.name))
        });
        out
    }
}
