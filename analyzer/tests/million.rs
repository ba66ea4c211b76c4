//! A layer of a million tiny entries: the analysis finishes with bounded memory (the file list is capped,
//! every entry is still counted). Its own test binary so the process's peak RSS is this test's alone.

mod support;

use std::io::Write;

use fathom_analyzer::layer::Limits;
use fathom_analyzer::{AnalyzerOptions, NoCache};
use support::streamed::{peak_rss_mib, single_layer_oci_dir};
use support::*;

#[test]
fn a_million_tiny_entries_in_bounded_memory() {
    const ENTRIES: u64 = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let source = single_layer_oci_dir(dir.path(), |mut out| {
        // Headers are stamped from a template (the tar crate's builder costs far more per entry in debug builds).
        let mut template = tar::Header::new_ustar();
        template.set_size(0);
        template.set_mode(0o644);
        template.set_mtime(0);
        template.set_entry_type(tar::EntryType::Regular);
        for i in 0..ENTRIES {
            let mut header = template.clone();
            let name = format!("d{}/f{i}", i % 1000);
            header.as_ustar_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
            header.set_cksum();
            out.write_all(header.as_bytes()).unwrap();
        }
        let mut builder = tar::Builder::new(out);
        let mut marker = tar::Header::new_gnu();
        marker.set_size(7);
        marker.set_mode(0o644);
        builder
            .append_data(&mut marker, "last.pkglist", &b"last 1\n"[..])
            .unwrap();
        builder.into_inner().unwrap()
    });
    eprintln!("built in {:?}", started.elapsed());
    let before = peak_rss_mib();
    let options = AnalyzerOptions {
        limits: Limits {
            max_recorded_files: 100_000,
            ..Limits::default()
        },
        ..Default::default()
    };
    let analysis = runtime()
        .block_on(list_analyzer(options).analyze(&source, &NoCache))
        .unwrap();
    let after = peak_rss_mib();
    eprintln!(
        "analyzed in {:?}; peak RSS {before} -> {after} MiB",
        started.elapsed()
    );
    assert_eq!(analysis.layers[0].entries, ENTRIES + 1);
    assert_eq!(dated(&analysis), vec![("last".into(), "1".into(), 0, 0)]);
    assert!(analysis.files.truncated);
    assert!(
        analysis
            .warnings
            .iter()
            .any(|w| w.contains("1000001 entries, only 100001 recorded")),
        "{:?}",
        analysis.warnings
    );
    // 100k recorded entries cost ~10 MiB; recording all million would cost over 100 MiB.
    assert!(
        after < before + 96,
        "peak RSS grew from {before} MiB to {after} MiB"
    );
}
