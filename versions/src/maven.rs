//! Maven's ComparableVersion ordering (as of Maven 3.8): items split at `.`, `-` and digit/letter changes, nested lists
//! after `-` and transitions, well-known qualifiers (`alpha` < `beta` < `milestone` < `rc` <
//! `snapshot` < release < `sp`), unknown qualifiers after them in lexical order, trailing nulls dropped.

use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    /// A number, kept as its digits without leading zeros so any length compares exactly.
    Int(String),
    Str(String),
    List(Vec<Item>),
}

const QUALIFIERS: [&str; 7] = ["alpha", "beta", "milestone", "rc", "snapshot", "", "sp"];
const RELEASE: &str = "5";

fn qualifier_key(q: &str) -> String {
    match QUALIFIERS.iter().position(|x| *x == q) {
        Some(i) => i.to_string(),
        None => format!("{}-{q}", QUALIFIERS.len()),
    }
}

fn string_item(s: &str, followed_by_digit: bool) -> Item {
    let s = match (s, followed_by_digit) {
        ("a", true) => "alpha",
        ("b", true) => "beta",
        ("m", true) => "milestone",
        _ => s,
    };
    let s = match s {
        "ga" | "final" | "release" => "",
        "cr" => "rc",
        other => other,
    };
    Item::Str(s.to_string())
}

fn parse_item(digit: bool, followed_by_digit: bool, s: &str) -> Item {
    if digit {
        let t = s.trim_start_matches('0');
        Item::Int(t.to_string())
    } else {
        string_item(s, followed_by_digit)
    }
}

fn is_null(item: &Item) -> bool {
    match item {
        Item::Int(s) => s.is_empty(),
        Item::Str(s) => qualifier_key(s) == RELEASE,
        Item::List(l) => l.is_empty(),
    }
}

/// Drops null items from the end, looking past trailing sub-lists (Maven's `ListItem.normalize`).
fn normalize(list: &mut Vec<Item>) {
    let mut i = list.len();
    while i > 0 {
        i -= 1;
        if is_null(&list[i]) {
            list.remove(i);
        } else if !matches!(list[i], Item::List(_)) {
            break;
        }
    }
}

/// Parses into nested lists. Built as a stack of open lists; each closes (and is normalized) at the end.
fn parse(version: &str) -> Vec<Item> {
    let v = version.trim().to_lowercase();
    let b = v.as_bytes();
    let mut stack: Vec<Vec<Item>> = vec![vec![]];
    let mut digit = false;
    let mut start = 0;
    let push_list = |stack: &mut Vec<Vec<Item>>| stack.push(vec![]);
    for i in 0..b.len() {
        let c = b[i];
        if c == b'.' || c == b'-' {
            let item = if i == start {
                Item::Int(String::new())
            } else {
                parse_item(digit, false, &v[start..i])
            };
            if let Some(l) = stack.last_mut() {
                l.push(item);
            }
            start = i + 1;
            if c == b'-' {
                push_list(&mut stack);
            }
        } else if c.is_ascii_digit() {
            if !digit && i > start {
                // Maven 3.8 reads `.X1` as `-X1` too.
                if stack.last().is_some_and(|l| !l.is_empty()) {
                    push_list(&mut stack);
                }
                if let Some(l) = stack.last_mut() {
                    l.push(string_item(&v[start..i], true));
                }
                start = i;
                push_list(&mut stack);
            }
            digit = true;
        } else {
            if digit && i > start {
                if let Some(l) = stack.last_mut() {
                    l.push(parse_item(true, false, &v[start..i]));
                }
                start = i;
                push_list(&mut stack);
            }
            digit = false;
        }
    }
    if b.len() > start {
        // Maven 3.8: a trailing `.X` qualifier is read as `-X` (1.0.0.x1 < 1.0.0-x2 otherwise surprises).
        if !digit && stack.last().is_some_and(|l| !l.is_empty()) {
            push_list(&mut stack);
        }
        if let Some(l) = stack.last_mut() {
            l.push(parse_item(digit, false, &v[start..]));
        }
    }
    // Close the open lists innermost first; each becomes the last item of its parent.
    while stack.len() > 1 {
        let mut inner = stack.pop().unwrap_or_default();
        normalize(&mut inner);
        if let Some(parent) = stack.last_mut() {
            parent.push(Item::List(inner));
        }
    }
    let mut root = stack.pop().unwrap_or_default();
    normalize(&mut root);
    root
}

fn cmp_item(a: Option<&Item>, b: Option<&Item>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => cmp_item(b, a).reverse(),
        (Some(Item::Int(x)), None) => {
            if x.is_empty() {
                Ordering::Equal
            } else {
                Ordering::Greater
            }
        }
        (Some(Item::Str(s)), None) => qualifier_key(s).as_str().cmp(RELEASE),
        // Maven 3.8 (MNG-6964): every item of the list counts against nothing, not just the first.
        (Some(Item::List(l)), None) => l
            .iter()
            .map(|i| cmp_item(Some(i), None))
            .find(|o| *o != Ordering::Equal)
            .unwrap_or(Ordering::Equal),
        (Some(Item::Int(x)), Some(Item::Int(y))) => x.len().cmp(&y.len()).then_with(|| x.cmp(y)),
        (Some(Item::Int(_)), Some(_)) => Ordering::Greater,
        (Some(Item::Str(_)), Some(Item::Int(_))) => Ordering::Less,
        (Some(Item::Str(x)), Some(Item::Str(y))) => qualifier_key(x).cmp(&qualifier_key(y)),
        (Some(Item::Str(_)), Some(Item::List(_))) => Ordering::Less,
        (Some(Item::List(_)), Some(Item::Int(_))) => Ordering::Less,
        (Some(Item::List(_)), Some(Item::Str(_))) => Ordering::Greater,
        (Some(Item::List(x)), Some(Item::List(y))) => cmp_lists(x, y),
    }
}

fn cmp_lists(a: &[Item], b: &[Item]) -> Ordering {
    for k in 0..a.len().max(b.len()) {
        match cmp_item(a.get(k), b.get(k)) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    Ordering::Equal
}

/// Compares two Maven versions (every string is a valid Maven version).
pub fn compare(a: &str, b: &str) -> Ordering {
    cmp_lists(&parse(a), &parse(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn table() {
        // Orders from Maven's ComparableVersionTest.
        let ordered = [
            "1-alpha2snapshot",
            "1-alpha2",
            "1-alpha-123",
            "1-beta-2",
            "1-beta123",
            "1-m2",
            "1-m11",
            "1-rc",
            "1-cr2",
            "1-rc123",
            "1-SNAPSHOT",
            "1",
            "1-sp",
            "1-sp2",
            "1-sp123",
            "1-abc",
            "1-def",
            "1-pom-1",
            "1-1-snapshot",
            "1-1",
            "1-2",
            "1-123",
        ];
        for w in ordered.windows(2) {
            assert_eq!(compare(w[0], w[1]), Less, "{} < {}", w[0], w[1]);
            assert_eq!(compare(w[1], w[0]), Greater, "{} > {}", w[1], w[0]);
        }
        for (a, b) in [
            ("1", "1.0.0"),
            ("1ga", "1"),
            ("1final", "1"),
            ("1.0-release", "1"),
            ("1-cr1", "1-rc1"),
            ("1a1", "1-alpha-1"),
            ("1.0.0-GA", "1"),
            ("1X", "1.0.0-x"),
            ("1a", "1.0-a"),
        ] {
            assert_eq!(compare(a, b), Equal, "{a} == {b}");
        }
        assert_eq!(compare("2.17.1", "2.17.0"), Greater);
        assert_eq!(compare("2.0.0.RELEASE", "2.0.0"), Equal);
        assert_eq!(compare("1.10", "1.9"), Greater);
        assert_eq!(compare("12345678901234567890", "2"), Greater);
    }
}
