//! The README's table of gates and triggers is the catalog's: rendered by `gates_markdown()` and compared
//! with the block between the README's `gates:start` and `gates:end` markers.

use std::path::Path;

const START: &str = "<!-- gates:start -->\n";
const END: &str = "<!-- gates:end -->";

#[test]
fn readme_lists_the_gates_and_triggers_of_the_code() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md readable");
    let start = readme
        .find(START)
        .expect("README has the gates:start marker")
        + START.len();
    let end = readme[start..]
        .find(END)
        .map(|i| start + i)
        .expect("README has the gates:end marker");
    let want = fathom_policy::gates_markdown();
    assert!(
        readme[start..end] == want,
        "README's gate table is out of date; replace the block between the markers with:\n{want}"
    );
    // The count the README states: every supported trigger against anchore's 40.
    let supported = want.lines().filter(|l| l.contains("| supported")).count();
    let missing = want
        .lines()
        .filter(|l| l.contains("**not supported**"))
        .count();
    assert_eq!((supported, supported + missing), (40, 40));
    let flat = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    let claim = format!(
        "fathom evaluates {supported} of the {} triggers",
        supported + missing
    );
    assert!(flat.contains(&claim), "README should say: {claim}");
}
