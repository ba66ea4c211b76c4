//! Planted content for the content pass: setuid/setgid executables, a fake AWS key, a PEM private key and
//! a key in a file a later layer deletes (which must not be reported).

use super::{dir, file, SampleEntry};

/// AWS's documented example access key id shape (not a real key).
pub const PLANTED_AWS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";

/// The body line of the planted PEM key: asserted absent from every output.
pub const PLANTED_PEM_BODY: &str = "MIIEowIBAAKCAQEAfathomFakeKeyMaterialDoNotUse0123456789abcdef";

/// Setuid (`0o4755`) and setgid (`0o2755`) executables the sample plants.
pub const PLANTED_SETUID: &str = "/usr/bin/fathom-su";
/// See [`PLANTED_SETUID`].
pub const PLANTED_SETGID: &str = "/usr/bin/fathom-wall";

fn with_mode(mut e: SampleEntry, mode: u32) -> SampleEntry {
    e.mode = mode;
    e
}

/// Entries added to `debian-python-npm`'s npm layer.
pub(crate) fn planted_files() -> Vec<SampleEntry> {
    vec![
        with_mode(file(PLANTED_SETUID, b"#!/bin/sh\nexec id\n"), 0o4755),
        with_mode(file(PLANTED_SETGID, b"#!/bin/sh\nexec true\n"), 0o2755),
        file(
            "/app/.env",
            format!("NODE_ENV=production\nAWS_ACCESS_KEY_ID={PLANTED_AWS_KEY}\n").as_bytes(),
        ),
        file(
            "/app/old.env",
            format!("AWS_ACCESS_KEY_ID={PLANTED_AWS_KEY}\n").as_bytes(),
        ),
        dir("/root"),
        dir("/root/.ssh"),
        file(
            "/root/.ssh/id_rsa",
            format!(
                "-----BEGIN RSA PRIVATE KEY-----\n{PLANTED_PEM_BODY}\n-----END RSA PRIVATE KEY-----\n"
            )
            .as_bytes(),
        ),
    ]
}

/// Secrets a correct scan of the named sample image reports: (path, line, rule), sorted.
pub fn expected_secrets(image: &str) -> Vec<(String, u64, String)> {
    match image {
        "debian-python-npm" => vec![
            ("/app/.env".into(), 2, "AWS_ACCESS_KEY".into()),
            ("/root/.ssh/id_rsa".into(), 1, "PRIV_KEY".into()),
        ],
        _ => vec![],
    }
}
