//! Package parts: the image document's package list is stored in parts, one per layer that introduced
//! packages, each part content-addressed under its layer's cache row (`fathom_image_package_parts`), so
//! images sharing base layers store those layers' packages once; the image's own document keeps what is
//! its own — the order to put the list back together exactly and each package's fields that name
//! this image's upper layers (`locations`: the layer holding the visible record, which moves when an
//! upper layer rewrites a package database; `last_changed_in`), so a base layer's packages are one
//! part across images that only add layers on top. A part goes when the layer sweeper
//! deletes its layer (the foreign key cascades), and an image's save locks its layers' rows first, so a
//! part an image names is never deleted under it.
//!
//! The document's `package_parts` (absent in documents stored before parts, or with nothing to part):
//! `parts` — `[{"layer": digest, "hash": hex sha256 of the part's JSON}]`; `order` — for each package of
//! the list in order, the index of the part it comes from (in that part's own order), or `parts.len()`
//! for the next package kept in the document's `packages`; `own` — for each package in order, its
//! image-specific fields taken out of its part (`{}` for a package kept whole). Extensible: readers
//! ignore other fields.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{document_error, Result, ZSTD_LEVEL};

/// Fields of an image package that name the image's own upper layers: kept in the image's document.
const OWN_FIELDS: [&str; 2] = ["locations", "last_changed_in"];

/// One part to store: layer digest, hash, zstd body.
pub(crate) type Part = (String, Vec<u8>, Vec<u8>);

/// Splits `doc`'s packages introduced in `stored` layers (layers whose cache row exists) into parts;
/// the document keeps the others and the order. Returns the parts to store.
pub(crate) fn split(what: &str, doc: &mut Value, stored: &[String]) -> Result<Vec<Part>> {
    let Some(packages) = doc.get_mut("packages").and_then(Value::as_array_mut) else {
        return Ok(vec![]);
    };
    let mut by_layer: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut inline = vec![];
    let mut order_layers: Vec<Option<String>> = vec![];
    let mut own: Vec<Value> = vec![];
    for mut p in packages.drain(..) {
        let layer = p
            .get("introduced_in")
            .and_then(|l| l.get("digest"))
            .and_then(Value::as_str)
            .filter(|d| stored.iter().any(|s| s == d))
            .map(str::to_owned);
        match layer {
            Some(l) => {
                let mut mine = serde_json::Map::new();
                if let Some(obj) = p.as_object_mut() {
                    for field in OWN_FIELDS {
                        if let Some(v) = obj.remove(field) {
                            mine.insert(field.to_string(), v);
                        }
                    }
                }
                own.push(Value::Object(mine));
                by_layer.entry(l.clone()).or_default().push(p);
                order_layers.push(Some(l));
            }
            None => {
                own.push(json!({}));
                inline.push(p);
                order_layers.push(None);
            }
        }
    }
    if by_layer.is_empty() {
        *packages = inline;
        return Ok(vec![]);
    }
    let own = Value::Array(own);
    let index: HashMap<&str, usize> = by_layer
        .keys()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    let inline_mark = by_layer.len();
    let order: Vec<usize> = order_layers
        .iter()
        .map(|l| {
            l.as_deref()
                .and_then(|l| index.get(l).copied())
                .unwrap_or(inline_mark)
        })
        .collect();
    let mut parts = vec![];
    let mut listed = vec![];
    for (layer, packages) in &by_layer {
        let body = serde_json::to_vec(packages).map_err(|e| document_error(what, e))?;
        let hash = Sha256::digest(&body).to_vec();
        listed.push(json!({"layer": layer, "hash": hex::encode(&hash)}));
        let compressed =
            zstd::bulk::compress(&body, ZSTD_LEVEL).map_err(|e| document_error(what, e))?;
        parts.push((layer.clone(), hash, compressed));
    }
    *packages = inline;
    if let Some(obj) = doc.as_object_mut() {
        obj.insert(
            "package_parts".into(),
            json!({"parts": listed, "order": order, "own": own}),
        );
    }
    Ok(parts)
}

/// Puts `doc`'s package list back together from its parts (`bodies`: hash → zstd body, a superset
/// is fine); a document without parts is left as it is.
pub(crate) fn join(what: &str, doc: &mut Value, bodies: &HashMap<Vec<u8>, Vec<u8>>) -> Result<()> {
    let Some(obj) = doc.as_object_mut() else {
        return Ok(());
    };
    let Some(spec) = obj.remove("package_parts") else {
        return Ok(());
    };
    let bad = |m: &str| document_error(what, m);
    let listed = spec
        .get("parts")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("package_parts has no parts list"))?;
    let mut parts: Vec<std::vec::IntoIter<Value>> = vec![];
    for p in listed {
        let hash = p
            .get("hash")
            .and_then(Value::as_str)
            .and_then(|h| hex::decode(h).ok())
            .ok_or_else(|| bad("a package part has no valid hash"))?;
        let body = bodies.get(&hash).ok_or_else(|| {
            bad(&format!(
                "package part {} of layer {} is not stored; re-analyze the image (fathom submit --force)",
                hex::encode(&hash),
                p.get("layer").and_then(Value::as_str).unwrap_or("?")
            ))
        })?;
        let json = super::decompress_bytes(what, body)?;
        let packages: Vec<Value> =
            serde_json::from_slice(&json).map_err(|e| document_error(what, e))?;
        parts.push(packages.into_iter());
    }
    let inline: Vec<Value> = match obj.remove("packages") {
        Some(Value::Array(a)) => a,
        _ => vec![],
    };
    let mut inline = inline.into_iter();
    let order = spec
        .get("order")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("package_parts has no order"))?;
    let own = spec.get("own").and_then(Value::as_array);
    let mut packages = Vec::with_capacity(order.len());
    for (k, o) in order.iter().enumerate() {
        let i = o
            .as_u64()
            .and_then(|i| usize::try_from(i).ok())
            .ok_or_else(|| bad("package_parts order holds a non-index"))?;
        let next = match parts.get_mut(i) {
            Some(part) => part.next(),
            None => inline.next(),
        };
        let mut next =
            next.ok_or_else(|| bad("package_parts order names more packages than stored"))?;
        if let (Some(fields), Some(obj)) = (
            own.and_then(|o| o.get(k)).and_then(Value::as_object),
            next.as_object_mut(),
        ) {
            for (f, v) in fields {
                obj.insert(f.clone(), v.clone());
            }
        }
        packages.push(next);
    }
    obj.insert("packages".into(), Value::Array(packages));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, layer: &str) -> Value {
        json!({"name": name, "introduced_in": {"index": 0, "digest": layer},
               "last_changed_in": {"index": 0, "digest": layer},
               "locations": [{"layer_digest": layer, "path": "/var/lib/dpkg/status"}]})
    }

    #[test]
    fn split_then_join_gives_back_the_same_list_in_the_same_order() {
        let original = json!({"schema": "x", "packages": [
            pkg("a", "l2"), pkg("b", "l1"), pkg("c", "unstored"), pkg("d", "l2"), pkg("e", "l1")]});
        let mut doc = original.clone();
        let parts = split("t", &mut doc, &["l1".into(), "l2".into()]).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(doc["packages"], json!([pkg("c", "unstored")]));
        let bodies: HashMap<Vec<u8>, Vec<u8>> = parts
            .iter()
            .map(|(_, h, b)| (h.clone(), b.clone()))
            .collect();
        join("t", &mut doc, &bodies).unwrap();
        assert_eq!(doc, original);
        // Equal packages of a layer are one part whatever image they come from.
        let mut other = json!({"packages": [pkg("e", "l1"), pkg("b", "l1")]});
        let again = split("t", &mut other, &["l1".into()]).unwrap();
        let mut same_order = json!({"packages": [pkg("b", "l1"), pkg("e", "l1")]});
        let same = split("t", &mut same_order, &["l1".into()]).unwrap();
        assert_ne!(
            again[0].1, same[0].1,
            "a part is its packages in the list's order"
        );
        assert_eq!(same[0].1, parts[0].1);
        // An upper layer rewriting the package database moves the records' locations: still one part.
        let mut moved = json!({"packages": [pkg("b", "l1"), pkg("e", "l1")]});
        for p in moved["packages"].as_array_mut().unwrap() {
            p["locations"][0]["layer_digest"] = json!("l9");
        }
        let moved_original = moved.clone();
        let moved_parts = split("t", &mut moved, &["l1".into()]).unwrap();
        assert_eq!(moved_parts[0].1, same[0].1);
        let bodies: HashMap<Vec<u8>, Vec<u8>> = moved_parts
            .iter()
            .map(|(_, h, b)| (h.clone(), b.clone()))
            .collect();
        join("t", &mut moved, &bodies).unwrap();
        assert_eq!(moved, moved_original);
        // A missing part is a clear error, not a shorter list.
        let mut doc = original.clone();
        split("t", &mut doc, &["l1".into()]).unwrap();
        let err = join("t", &mut doc, &HashMap::new()).unwrap_err();
        assert!(err.to_string().contains("not stored"), "{err}");
    }
}
