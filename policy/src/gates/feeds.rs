//! The `npms` and `ruby_gems` gates (anchore-engine's `gates/npms.py` and `gates/gems.py`).
//!
//! Three triggers of each read anchore's npm/gem metadata feeds (which package names and versions the
//! official registries list, and the latest): anchore discontinued those feeds, and fathom has none. With
//! the feed empty anchore's triggers return before looking at a package, so they never fire here either;
//! its `feed_data_unavailable` fires on every evaluation (anchore fires it whenever the feed group was
//! never synced, whether or not the image has such packages). The blacklist triggers read only the
//! image's own packages and work as anchore's do.

use super::{Ctx, Fire};
use crate::params::Params;

/// A compiled check of the npms or ruby_gems gate.
#[derive(Debug)]
pub(crate) enum Check {
    /// `newer_version_in_feed`, `unknown_in_feeds`, `version_not_in_feeds` and the ruby_gems equivalents:
    /// anchore returns at once when its feed holds none of the image's packages.
    FeedOnly,
    /// `blacklisted_name_version` (npms) / `blacklist` (ruby_gems).
    Blacklist {
        pkg_type: &'static str,
        /// Message prefix: anchore's `NPM Package` / `Gem Package`.
        label: &'static str,
        name: String,
        version: Option<String>,
    },
    /// `feed_data_unavailable`, with anchore's fixed message.
    NoFeed(&'static str),
}

impl Check {
    pub(crate) fn build(gate: &str, trigger: &str, p: &Params) -> Check {
        let npm = gate == "npms";
        match trigger {
            "blacklisted_name_version" | "blacklist" => Check::Blacklist {
                pkg_type: if npm { "npm" } else { "gem" },
                label: if npm { "NPM Package" } else { "Gem Package" },
                name: p.str("name").unwrap_or_default().to_string(),
                version: p.str("version").map(String::from),
            },
            "feed_data_unavailable" if npm => Check::NoFeed(
                "NPM packages are present but the anchore npm feed is not available - will be unable to perform checks that require feed data",
            ),
            "feed_data_unavailable" => Check::NoFeed(
                "Gem packages are present but the anchore gem feed is not available - will be unable to perform checks that require feed data",
            ),
            _ => Check::FeedOnly,
        }
    }

    pub(crate) fn evaluate(&self, ctx: &Ctx<'_>) -> Vec<Fire> {
        match self {
            Check::FeedOnly => Vec::new(),
            Check::NoFeed(message) => vec![Fire::msg(*message)],
            Check::Blacklist {
                pkg_type,
                label,
                name,
                version,
            } => {
                // anchore gathers the versions installed per name and fires once per rule: on the name
                // alone, or when the given version is among them. An empty version counts as none given
                // only for the match (`if version and ...`), as anchore's falsy test does.
                let mut versions = ctx
                    .facts
                    .packages
                    .iter()
                    .filter(|p| p.pkg_type == *pkg_type && &p.name == name)
                    .map(|p| p.version.as_str())
                    .peekable();
                if versions.peek().is_none() {
                    return Vec::new();
                }
                match version.as_deref() {
                    None => vec![Fire::msg(format!("{label} is blacklisted: {name}"))],
                    Some("") => Vec::new(),
                    Some(v) if versions.any(|have| have == v) => {
                        vec![Fire::msg(format!("{label} is blacklisted: {name}-{v}"))]
                    }
                    Some(_) => Vec::new(),
                }
            }
        }
    }
}
