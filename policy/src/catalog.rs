//! The gates, triggers and parameters a bundle may name: anchore-engine's v1_0 catalog, as data.

/// How a parameter's string value must read.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// Any string.
    Str,
    /// One of a fixed set (compared case-sensitively, as anchore does).
    Enum(&'static [&'static str]),
    /// A non-negative integer.
    Int,
    /// A finite decimal number.
    Float,
    /// `true` or `false` (any case).
    Bool,
    /// A regular expression, compiled once at load.
    Regex,
    /// A comma-separated list of strings.
    List,
    /// A comma-separated list of port numbers.
    Ports,
    /// A comma-separated list of non-negative integers (ids).
    Numbers,
}

/// One parameter of a trigger.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ParamSpec {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
}

/// One trigger of a gate.
#[derive(Debug)]
pub(crate) struct TriggerSpec {
    pub name: &'static str,
    pub params: &'static [ParamSpec],
}

/// One gate.
#[derive(Debug)]
pub(crate) struct GateSpec {
    pub name: &'static str,
    pub triggers: &'static [TriggerSpec],
}

const fn p(name: &'static str, kind: Kind, required: bool) -> ParamSpec {
    ParamSpec {
        name,
        kind,
        required,
    }
}

/// Comparison operators of the vulnerability scores and severities.
pub(crate) const COMPARISONS: &[&str] = &["=", "!=", "<", ">", "<=", ">="];
/// Severities, lowest first (anchore's SEVERITY_ORDERING).
pub(crate) const SEVERITIES: &[&str] =
    &["unknown", "negligible", "low", "medium", "high", "critical"];
/// Dockerfile instructions the `instruction` trigger may name.
pub(crate) const DIRECTIVES: &[&str] = &[
    "ADD",
    "ARG",
    "COPY",
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "USER",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "VOLUME",
    "WORKDIR",
];
/// Checks of the dockerfile `instruction` trigger.
pub(crate) const INSTRUCTION_CHECKS: &[&str] = &[
    "=",
    "!=",
    "exists",
    "not_exists",
    "like",
    "not_like",
    "in",
    "not_in",
];
/// Checks of the metadata `attribute` trigger.
pub(crate) const ATTRIBUTE_CHECKS: &[&str] = &[
    "=",
    "!=",
    ">",
    "<",
    ">=",
    "<=",
    "exists",
    "not_exists",
    "like",
    "not_like",
    "in",
    "not_in",
];
/// Image attributes the metadata `attribute` trigger may name.
pub(crate) const ATTRIBUTES: &[&str] = &[
    "size",
    "architecture",
    "os_type",
    "distro",
    "distro_version",
    "like_distro",
    "layer_count",
];
/// anchore's values are whitelist/blacklist; allow/deny are accepted as the same.
pub(crate) const LIST_TYPES: &[&str] = &["whitelist", "blacklist", "allow", "deny"];

const SCORE_PARAMS: [ParamSpec; 12] = [
    p(
        "cvss_v3_base_score_comparison",
        Kind::Enum(COMPARISONS),
        false,
    ),
    p("cvss_v3_base_score", Kind::Float, false),
    p(
        "cvss_v3_exploitability_score_comparison",
        Kind::Enum(COMPARISONS),
        false,
    ),
    p("cvss_v3_exploitability_score", Kind::Float, false),
    p(
        "cvss_v3_impact_score_comparison",
        Kind::Enum(COMPARISONS),
        false,
    ),
    p("cvss_v3_impact_score", Kind::Float, false),
    p(
        "vendor_cvss_v3_base_score_comparison",
        Kind::Enum(COMPARISONS),
        false,
    ),
    p("vendor_cvss_v3_base_score", Kind::Float, false),
    p(
        "vendor_cvss_v3_exploitability_score_comparison",
        Kind::Enum(COMPARISONS),
        false,
    ),
    p("vendor_cvss_v3_exploitability_score", Kind::Float, false),
    p(
        "vendor_cvss_v3_impact_score_comparison",
        Kind::Enum(COMPARISONS),
        false,
    ),
    p("vendor_cvss_v3_impact_score", Kind::Float, false),
];

const VULN_PACKAGE: &[ParamSpec] = &[
    p("package_type", Kind::Enum(&["all", "os", "non-os"]), true),
    p("severity_comparison", Kind::Enum(COMPARISONS), false),
    p("severity", Kind::Enum(SEVERITIES), false),
    SCORE_PARAMS[0],
    SCORE_PARAMS[1],
    SCORE_PARAMS[2],
    SCORE_PARAMS[3],
    SCORE_PARAMS[4],
    SCORE_PARAMS[5],
    SCORE_PARAMS[6],
    SCORE_PARAMS[7],
    SCORE_PARAMS[8],
    SCORE_PARAMS[9],
    SCORE_PARAMS[10],
    SCORE_PARAMS[11],
    p("fix_available", Kind::Bool, false),
    p("vendor_only", Kind::Bool, false),
    p("max_days_since_creation", Kind::Int, false),
    p("max_days_since_fix", Kind::Int, false),
    p("package_path_exclude", Kind::Regex, false),
];

/// Every gate fathom evaluates, with anchore's names.
pub(crate) static GATES: &[GateSpec] = &[
    GateSpec {
        name: "vulnerabilities",
        triggers: &[
            TriggerSpec {
                name: "package",
                params: VULN_PACKAGE,
            },
            TriggerSpec {
                name: "stale_feed_data",
                params: &[p("max_days_since_sync", Kind::Int, true)],
            },
            TriggerSpec {
                name: "vulnerability_data_unavailable",
                params: &[],
            },
            TriggerSpec {
                name: "blacklist",
                params: &[
                    p("vulnerability_ids", Kind::List, true),
                    p("vendor_only", Kind::Bool, false),
                ],
            },
        ],
    },
    GateSpec {
        name: "dockerfile",
        triggers: &[
            TriggerSpec {
                name: "instruction",
                params: &[
                    p("instruction", Kind::Enum(DIRECTIVES), true),
                    p("check", Kind::Enum(INSTRUCTION_CHECKS), true),
                    p("value", Kind::Str, false),
                    p("actual_dockerfile_only", Kind::Bool, false),
                ],
            },
            TriggerSpec {
                name: "exposed_ports",
                params: &[
                    p("ports", Kind::Ports, true),
                    p("type", Kind::Enum(LIST_TYPES), true),
                    p("actual_dockerfile_only", Kind::Bool, false),
                ],
            },
            TriggerSpec {
                name: "effective_user",
                params: &[
                    p("users", Kind::List, true),
                    p("type", Kind::Enum(LIST_TYPES), true),
                ],
            },
            TriggerSpec {
                name: "no_dockerfile_provided",
                params: &[],
            },
        ],
    },
    GateSpec {
        name: "packages",
        triggers: &[
            TriggerSpec {
                name: "required_package",
                params: &[
                    p("name", Kind::Str, true),
                    p("version", Kind::Str, false),
                    p(
                        "version_match_type",
                        Kind::Enum(&["exact", "minimum"]),
                        false,
                    ),
                ],
            },
            TriggerSpec {
                name: "blacklist",
                params: &[p("name", Kind::Str, true), p("version", Kind::Str, false)],
            },
            TriggerSpec {
                name: "verify",
                params: &[
                    p("only_packages", Kind::List, false),
                    p("only_directories", Kind::List, false),
                    p("check", Kind::Enum(&["changed", "missing"]), false),
                ],
            },
        ],
    },
    GateSpec {
        name: "licenses",
        triggers: &[
            TriggerSpec {
                name: "blacklist_exact_match",
                params: &[p("licenses", Kind::List, true)],
            },
            TriggerSpec {
                name: "blacklist_partial_match",
                params: &[p("licenses", Kind::List, true)],
            },
        ],
    },
    GateSpec {
        name: "files",
        triggers: &[
            TriggerSpec {
                name: "content_regex_match",
                params: &[p("regex_name", Kind::Str, false)],
            },
            TriggerSpec {
                name: "name_match",
                params: &[p("regex", Kind::Regex, true)],
            },
            TriggerSpec {
                name: "attribute_match",
                params: &[
                    p("filename", Kind::Str, true),
                    p("checksum_algorithm", Kind::Enum(&["sha256"]), false),
                    p("checksum", Kind::Str, false),
                    p(
                        "checksum_match",
                        Kind::Enum(&["equals", "not_equals"]),
                        false,
                    ),
                    p("mode", Kind::Str, false),
                    p("mode_op", Kind::Enum(&["equals", "not_equals"]), false),
                    p("skip_missing", Kind::Bool, false),
                ],
            },
            TriggerSpec {
                name: "suid_or_guid_set",
                params: &[],
            },
        ],
    },
    GateSpec {
        name: "secret_scans",
        triggers: &[TriggerSpec {
            name: "content_regex_checks",
            params: &[
                p("content_regex_name", Kind::Str, false),
                p("filename_regex", Kind::Regex, false),
                p("match_type", Kind::Enum(&["notfound", "found"]), false),
            ],
        }],
    },
    GateSpec {
        name: "metadata",
        triggers: &[TriggerSpec {
            name: "attribute",
            params: &[
                p("attribute", Kind::Enum(ATTRIBUTES), true),
                p("check", Kind::Enum(ATTRIBUTE_CHECKS), true),
                p("value", Kind::Str, false),
            ],
        }],
    },
    GateSpec {
        name: "npms",
        triggers: &[
            TriggerSpec {
                name: "newer_version_in_feed",
                params: &[],
            },
            TriggerSpec {
                name: "unknown_in_feeds",
                params: &[],
            },
            TriggerSpec {
                name: "version_not_in_feeds",
                params: &[],
            },
            TriggerSpec {
                name: "blacklisted_name_version",
                params: &[p("name", Kind::Str, true), p("version", Kind::Str, false)],
            },
            TriggerSpec {
                name: "feed_data_unavailable",
                params: &[],
            },
        ],
    },
    GateSpec {
        name: "ruby_gems",
        triggers: &[
            TriggerSpec {
                name: "newer_version_found_in_feed",
                params: &[],
            },
            TriggerSpec {
                name: "not_found_in_feed",
                params: &[],
            },
            TriggerSpec {
                name: "version_not_found_in_feed",
                params: &[],
            },
            TriggerSpec {
                name: "blacklist",
                params: &[p("name", Kind::Str, true), p("version", Kind::Str, false)],
            },
            TriggerSpec {
                name: "feed_data_unavailable",
                params: &[],
            },
        ],
    },
    GateSpec {
        name: "passwd_file",
        triggers: &[
            TriggerSpec {
                name: "content_not_available",
                params: &[],
            },
            TriggerSpec {
                name: "blacklist_usernames",
                params: &[p("user_names", Kind::List, true)],
            },
            TriggerSpec {
                name: "blacklist_userids",
                params: &[p("user_ids", Kind::Numbers, true)],
            },
            TriggerSpec {
                name: "blacklist_groupids",
                params: &[p("group_ids", Kind::Numbers, true)],
            },
            TriggerSpec {
                name: "blacklist_shells",
                params: &[p("shells", Kind::List, true)],
            },
            TriggerSpec {
                name: "blacklist_full_entry",
                params: &[p("entry", Kind::Str, true)],
            },
        ],
    },
    GateSpec {
        name: "retrieved_files",
        triggers: &[
            TriggerSpec {
                name: "content_not_available",
                params: &[p("path", Kind::Str, true)],
            },
            TriggerSpec {
                name: "content_regex",
                params: &[
                    p("path", Kind::Str, true),
                    p("regex", Kind::Regex, true),
                    p("check", Kind::Enum(&["match", "no_match"]), true),
                ],
            },
        ],
    },
    GateSpec {
        name: "malware",
        triggers: &[
            TriggerSpec {
                name: "scans",
                params: &[],
            },
            TriggerSpec {
                name: "scan_not_run",
                params: &[],
            },
        ],
    },
    GateSpec {
        name: "always",
        triggers: &[TriggerSpec {
            name: "always",
            params: &[],
        }],
    },
];

/// The gate named `name` (case-insensitive, as anchore looks gates up).
pub(crate) fn gate(name: &str) -> Option<&'static GateSpec> {
    GATES.iter().find(|g| g.name.eq_ignore_ascii_case(name))
}

impl GateSpec {
    /// The trigger named `name` (case-insensitive).
    pub(crate) fn trigger(&self, name: &str) -> Option<&'static TriggerSpec> {
        self.triggers
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
    }
}

impl TriggerSpec {
    /// The parameter named `name`, in any case: anchore lower-cases the names a rule gives.
    pub(crate) fn param(&self, name: &str) -> Option<&'static ParamSpec> {
        self.params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }
}
