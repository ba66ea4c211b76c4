//! What a registry's answer means for a watch: a tag's new digest, an unchanged one, a tag gone missing;
//! which of a repository's tags become watches. Pure decisions, table-tested; the pass applies them.

use std::collections::HashSet;

use regex::{Regex, RegexBuilder};

use crate::error::{Error, Result};

/// What one look at a tag found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// The tag points at this digest.
    Digest(String),
    /// The registry says the tag (or its repository) is not there; its answer.
    Missing(String),
    /// The registry could not be asked or refused (unreachable, 401/403, 429, 5xx); what happened.
    Failed(String),
}

/// What to record for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// First digest seen for the watch: start its history; submit it (skipped when analyzed already).
    First(String),
    /// Same digest as last time: only `last_seen` moves.
    Unchanged,
    /// The tag moved: a history row for the new digest and an analysis queued, in one transaction.
    Moved {
        /// The digest it pointed at before.
        from: String,
        /// The digest it points at now.
        to: String,
    },
    /// The tag is gone: marked `missing` with the registry's answer, never deleted; history kept.
    Missing(String),
    /// Could not look: marked `failing` with the reason; digest and history kept.
    Failing(String),
}

/// Decides what `seen` means for a watch whose last digest was `previous`.
pub fn decide(previous: Option<&str>, seen: &Seen) -> Change {
    match (previous, seen) {
        (None, Seen::Digest(d)) => Change::First(d.clone()),
        (Some(p), Seen::Digest(d)) if p == d => Change::Unchanged,
        (Some(p), Seen::Digest(d)) => Change::Moved {
            from: p.to_string(),
            to: d.clone(),
        },
        (_, Seen::Missing(answer)) => Change::Missing(answer.clone()),
        (_, Seen::Failed(reason)) => Change::Failing(reason.clone()),
    }
}

/// Largest compiled size of an include or exclude pattern: a pattern is user input.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A repository watch's tag filters.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    include: Option<Regex>,
    exclude: Option<Regex>,
}

impl Filters {
    /// Compiles the patterns; one that does not compile is [`Error::InvalidField`] naming `include` or
    /// `exclude`. Patterns match anywhere in the tag (anchor with `^…$` for the whole tag).
    pub fn new(include: Option<&str>, exclude: Option<&str>) -> Result<Filters> {
        let compile = |field: &'static str, pattern: Option<&str>| {
            pattern
                .map(|p| {
                    RegexBuilder::new(p)
                        .size_limit(REGEX_SIZE_LIMIT)
                        .build()
                        .map_err(|e| Error::InvalidField {
                            field,
                            message: format!("{p:?} is not a regular expression: {e}"),
                        })
                })
                .transpose()
        };
        Ok(Filters {
            include: compile("include", include)?,
            exclude: compile("exclude", exclude)?,
        })
    }

    /// Whether `tag` passes: matches `include` (when given) and not `exclude`.
    pub fn passes(&self, tag: &str) -> bool {
        self.include.as_ref().is_none_or(|r| r.is_match(tag))
            && !self.exclude.as_ref().is_some_and(|r| r.is_match(tag))
    }
}

/// Which listed tags a repository watch adds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepositoryPlan {
    /// New tags to watch, sorted.
    pub add: Vec<String>,
    /// Listed tags the filters turned away.
    pub filtered: usize,
    /// New tags passing the filters that the cap left unwatched (reported in the watch).
    pub capped: usize,
}

/// Plans a repository watch's look at `listed` tags: those passing `filters` and not `watched` already
/// become watches, up to `cap` watches made by this repository watch (`children` exist already).
pub fn plan_repository(
    listed: &[String],
    watched: &HashSet<String>,
    filters: &Filters,
    children: usize,
    cap: usize,
) -> RepositoryPlan {
    let mut fresh: Vec<&String> = Vec::new();
    let mut filtered = 0;
    let mut seen = HashSet::new();
    for tag in listed {
        if !seen.insert(tag.as_str()) {
            continue;
        }
        if !filters.passes(tag) {
            filtered += 1;
        } else if !watched.contains(tag) {
            fresh.push(tag);
        }
    }
    fresh.sort();
    let room = cap.saturating_sub(children);
    let capped = fresh.len().saturating_sub(room);
    fresh.truncate(room);
    RepositoryPlan {
        add: fresh.into_iter().cloned().collect(),
        filtered,
        capped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Seen {
        Seen::Digest(s.into())
    }

    #[test]
    fn decisions_on_what_a_tag_shows() {
        let table = [
            (None, d("a"), Change::First("a".into())),
            (Some("a"), d("a"), Change::Unchanged),
            (
                Some("a"),
                d("b"),
                Change::Moved {
                    from: "a".into(),
                    to: "b".into(),
                },
            ),
            (
                Some("a"),
                Seen::Missing("MANIFEST_UNKNOWN".into()),
                Change::Missing("MANIFEST_UNKNOWN".into()),
            ),
            (
                None,
                Seen::Failed("HTTP 503".into()),
                Change::Failing("HTTP 503".into()),
            ),
        ];
        for (previous, seen, want) in table {
            assert_eq!(decide(previous, &seen), want, "{previous:?} {seen:?}");
        }
    }

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_repository_adds_new_passing_tags_up_to_its_cap() {
        let f = Filters::new(Some(r"^v\d"), Some("-rc")).unwrap();
        let listed = tags(&["v2", "v1", "latest", "v3-rc1", "v1", "v4", "v5"]);
        let watched: HashSet<String> = ["v1".to_string()].into();
        let plan = plan_repository(&listed, &watched, &f, 1, 3);
        // v1 is watched; latest and v3-rc1 filtered; v2, v4, v5 are new but only two fit under 3.
        assert_eq!(plan.add, tags(&["v2", "v4"]));
        assert_eq!(plan.filtered, 2);
        assert_eq!(plan.capped, 1);
        // Already at the cap: nothing added, everything new is counted.
        let full = plan_repository(&listed, &watched, &f, 5, 3);
        assert!(full.add.is_empty());
        assert_eq!(full.capped, 3);
    }

    #[test]
    fn filters_that_do_not_compile_name_their_field() {
        let e = Filters::new(Some("("), None).unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidField {
                    field: "include",
                    ..
                }
            ),
            "{e}"
        );
        let e = Filters::new(None, Some("[z-a]")).unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidField {
                    field: "exclude",
                    ..
                }
            ),
            "{e}"
        );
        // A pattern that compiles to something huge is refused, not built.
        let e = Filters::new(Some(r"(\w{100}){100}"), None).unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidField {
                    field: "include",
                    ..
                }
            ),
            "{e}"
        );
        assert!(Filters::default().passes("anything"));
    }
}
