//! The `npms` and `ruby_gems` gates (anchore-engine's gates/npms.py and gates/gems.py), with anchore's
//! npm/gem metadata feeds empty: they are discontinued and fathom has none.

mod support;

use fathom_policy::Action;
use md5::{Digest, Md5};
use support::*;

fn facts() -> fathom_policy::ImageFacts {
    let mut f = image();
    f.packages = vec![
        package("npm", "left-pad", "1.3.0"),
        // The same package at two paths and versions: anchore lists every version under the name.
        package("npm", "lodash", "4.17.20"),
        package("npm", "lodash", "4.17.21"),
        package("gem", "rails", "6.1.0"),
        // Same names, other ecosystems: never an npm or a gem.
        package("python", "rails", "1.0"),
        package("gem", "left-pad", "0.1"),
    ];
    f
}

/// (gate, trigger, params, expected Check_Output).
type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);

#[test]
fn blacklists_fire_once_per_rule_on_name_or_installed_version() {
    let cases: &[Case] = &[
        (
            "npms",
            "blacklisted_name_version",
            &[("name", "left-pad")],
            &["NPM Package is blacklisted: left-pad"],
        ),
        (
            "npms",
            "blacklisted_name_version",
            &[("name", "lodash")],
            &["NPM Package is blacklisted: lodash"],
        ),
        (
            "npms",
            "blacklisted_name_version",
            &[("name", "lodash"), ("version", "4.17.21")],
            &["NPM Package is blacklisted: lodash-4.17.21"],
        ),
        (
            "npms",
            "blacklisted_name_version",
            &[("name", "lodash"), ("version", "4.17.19")],
            &[],
        ),
        (
            "npms",
            "blacklisted_name_version",
            &[("name", "rails")],
            &[],
        ),
        // anchore's `if version and ...` / `elif version is None`: an empty version fires neither way.
        (
            "npms",
            "blacklisted_name_version",
            &[("name", "lodash"), ("version", "")],
            &[],
        ),
        (
            "ruby_gems",
            "blacklist",
            &[("name", "rails")],
            &["Gem Package is blacklisted: rails"],
        ),
        (
            "ruby_gems",
            "blacklist",
            &[("name", "rails"), ("version", "6.1.0")],
            &["Gem Package is blacklisted: rails-6.1.0"],
        ),
        (
            "ruby_gems",
            "blacklist",
            &[("name", "rails"), ("version", "1.0")],
            &[],
        ),
        ("ruby_gems", "blacklist", &[("name", "lodash")], &[]),
    ];
    for (gate, trigger, params, want) in cases {
        let b = one_rule(gate, trigger, "STOP", params);
        assert_eq!(outputs(&b, &facts()), *want, "{gate}.{trigger} {params:?}");
    }
}

#[test]
fn feed_triggers_never_fire_with_the_feed_empty() {
    // anchore: `if not feed_npms or not img_npms: return` (and the same for gems).
    for (gate, trigger) in [
        ("npms", "newer_version_in_feed"),
        ("npms", "unknown_in_feeds"),
        ("npms", "version_not_in_feeds"),
        ("ruby_gems", "newer_version_found_in_feed"),
        ("ruby_gems", "not_found_in_feed"),
        ("ruby_gems", "version_not_found_in_feed"),
    ] {
        let b = one_rule(gate, trigger, "STOP", &[]);
        let r = run(&b, &facts());
        assert_eq!(
            (r.final_action, r.rows.len()),
            (Action::Go, 0),
            "{gate}.{trigger}"
        );
    }
}

#[test]
fn feed_data_unavailable_always_fires_with_anchores_message() {
    // anchore fires NoFeedTrigger whenever the feed group has no last sync, packages or not.
    let mut empty = image();
    empty.packages.clear();
    for (gate, message) in [
        ("npms", "NPM packages are present but the anchore npm feed is not available - will be unable to perform checks that require feed data"),
        ("ruby_gems", "Gem packages are present but the anchore gem feed is not available - will be unable to perform checks that require feed data"),
    ] {
        let b = one_rule(gate, "feed_data_unavailable", "WARN", &[]);
        for f in [facts(), empty.clone()] {
            let r = run(&b, &f);
            assert_eq!(r.final_action, Action::Warn, "{gate}");
            assert_eq!(r.rows.len(), 1);
            assert_eq!(&*r.rows[0].check_output, message);
            // The trigger id is anchore's MD5 of gate, trigger and message.
            let id = hex::encode(Md5::digest(format!("{gate}feed_data_unavailable{message}")));
            assert_eq!(&*r.rows[0].trigger_id, id.as_str());
        }
    }
}
