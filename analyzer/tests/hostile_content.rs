//! The content pass on hostile files (the analyzer content issue's bad inputs): a 1 GiB file that is one
//! line, a 10 MB line with a key at its end, binary junk full of regex syntax and a planted key, and a
//! directory nested thousands of levels deep. The layer is still analyzed, findings are right, memory
//! stays bounded. Its own test binary so the process's peak RSS is this test's alone.

mod support;

use std::io::Read;

use fathom_analyzer::content::ContentOptions;
use fathom_analyzer::{AnalyzerOptions, NoCache};
use fathom_testkit::samples::PLANTED_AWS_KEY;
use support::streamed::{peak_rss_mib, single_layer_oci_dir};
use support::*;

const GIB: u64 = 1 << 30;

fn append(builder: &mut tar::Builder<impl std::io::Write>, path: &str, size: u64, data: impl Read) {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, path, data).unwrap();
}

#[test]
fn hostile_files_leave_the_layer_analyzed_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let long_line = {
        let mut v = vec![b'x'; 10_000_000];
        v.extend_from_slice(format!(" {PLANTED_AWS_KEY}\n").as_bytes());
        v
    };
    let junk: Vec<u8> = (0..40_000u32)
        .flat_map(|i| {
            let mut chunk = b"(a+)+$[^\\x00]{999999}\\b".to_vec();
            chunk.push((i % 251) as u8);
            chunk
        })
        .chain(format!("\0 {PLANTED_AWS_KEY} ").into_bytes())
        .collect();
    let deep: String = (0..3000).map(|_| "d/").collect::<String>() + "leaf.pkglist";

    let source = single_layer_oci_dir(dir.path(), |out| {
        let mut builder = tar::Builder::new(out);
        // One line of 1 GiB, the key in its first bytes: above the search cap, so not read for secrets.
        let head = format!("{PLANTED_AWS_KEY} ").into_bytes();
        let rest = GIB - head.len() as u64;
        append(
            &mut builder,
            "huge.txt",
            GIB,
            head.as_slice().chain(std::io::repeat(b'y').take(rest)),
        );
        append(
            &mut builder,
            "long-line.txt",
            long_line.len() as u64,
            long_line.as_slice(),
        );
        append(&mut builder, "junk.bin", junk.len() as u64, junk.as_slice());
        append(&mut builder, &deep, 8, &b"deep 1.0"[..]);
        append(&mut builder, "last.pkglist", 7, &b"last 1\n"[..]);
        builder.into_inner().unwrap()
    });

    let before = peak_rss_mib();
    let mut content = ContentOptions {
        entries_in_document: true,
        ..Default::default()
    };
    // Search files up to 16 MiB so the 10 MB line is read (the default cap is 1 MiB).
    content.secrets.max_file_bytes = 16 << 20;
    let options = AnalyzerOptions {
        content,
        ..Default::default()
    };
    let analysis = runtime()
        .block_on(list_analyzer(options).analyze(&source, &NoCache))
        .unwrap();
    let after = peak_rss_mib();
    eprintln!("peak RSS {before} -> {after} MiB");

    let mut packages = dated(&analysis);
    packages.sort();
    assert_eq!(
        packages,
        vec![
            ("deep".into(), "1.0".into(), 0, 0),
            ("last".into(), "1".into(), 0, 0)
        ]
    );
    let found: Vec<(&str, u64, &str)> = analysis
        .secrets
        .iter()
        .map(|s| (s.path.as_str(), s.line, s.rule.as_str()))
        .collect();
    assert_eq!(found, vec![("/long-line.txt", 1, "AWS_ACCESS_KEY")]);

    let entry = |path: &str| {
        analysis
            .files
            .entries
            .iter()
            .find(|f| f.entry.path == path)
            .unwrap_or_else(|| panic!("{path} is in the inventory"))
    };
    let huge = entry("/huge.txt");
    assert_eq!(huge.entry.size, GIB);
    assert_eq!(huge.entry.sha256, None, "above the digest cap");
    assert!(
        entry("/junk.bin").entry.sha256.is_some(),
        "under the digest cap"
    );
    assert!(entry(&format!("/{deep}")).entry.size == 8);
    assert!(!format!("{:?}", analysis.warnings).contains(PLANTED_AWS_KEY));

    // The 1 GiB file streams through; only the 10 MB file is held (once) for the search.
    assert!(
        after < before + 128,
        "peak RSS grew from {before} MiB to {after} MiB"
    );
}
