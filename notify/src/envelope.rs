//! CloudEvents 1.0 in the structured JSON format (`application/cloudevents+json`): one JSON object with
//! the context attributes beside `data`. Written with serde rather than the `cloudevents-sdk` crate: fathom
//! sends only JSON data in structured mode, which is eight fields, and the SDK would add chrono, url and
//! its protocol bindings to the build for them; the tests check the output against the spec's attribute rules.

use serde::{Deserialize, Serialize};

/// The media type of a structured-mode request body.
pub const CONTENT_TYPE: &str = "application/cloudevents+json; charset=utf-8";

/// The CloudEvents `type` of the event `fathom notifications test` sends (never written to the outbox).
pub const TEST_EVENT: &str = "dev.fathom.notifications.test";

/// One event as sent: CloudEvents 1.0 structured JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    /// Always `1.0`.
    pub specversion: String,
    /// The outbox row's UUID: unique per event, the same on every retry, so receivers drop duplicates by it.
    pub id: String,
    /// `services.notifications.source`.
    pub source: String,
    /// `dev.fathom.…` (see [`crate::types`]).
    #[serde(rename = "type")]
    pub kind: String,
    /// The image digest, tag, vulnerability id or feed the event is about.
    pub subject: String,
    /// When the change was made (RFC 3339, UTC).
    pub time: String,
    /// Always `application/json`.
    pub datacontenttype: String,
    /// The event's payload.
    pub data: serde_json::Value,
}

impl CloudEvent {
    /// An event with the fixed attributes filled in.
    pub fn new(
        id: impl Into<String>,
        source: impl Into<String>,
        kind: impl Into<String>,
        subject: impl Into<String>,
        time: impl Into<String>,
        data: serde_json::Value,
    ) -> Self {
        CloudEvent {
            specversion: "1.0".into(),
            id: id.into(),
            source: source.into(),
            kind: kind.into(),
            subject: subject.into(),
            time: time.into(),
            datacontenttype: "application/json".into(),
            data,
        }
    }

    /// The request body (compact JSON): what is signed and sent.
    pub fn body(&self) -> Vec<u8> {
        // Serializing strings and a `Value` to a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn sample() -> CloudEvent {
        CloudEvent::new(
            "6f1c1d2e-0000-4000-8000-000000000001",
            "urn:fathom",
            "dev.fathom.image.analyzed",
            "sha256:abc",
            "2026-12-15T10:00:00.123456Z",
            json!({"digest": "sha256:abc"}),
        )
    }

    #[test]
    fn follows_the_specs_attribute_rules() {
        let v: Value = serde_json::from_slice(&sample().body()).unwrap();
        let obj = v.as_object().unwrap();
        // REQUIRED context attributes (CloudEvents 1.0 §3.1), non-empty strings.
        for required in ["specversion", "id", "source", "type"] {
            let s = obj[required]
                .as_str()
                .unwrap_or_else(|| panic!("{required} is a string"));
            assert!(!s.is_empty(), "{required} is empty");
        }
        assert_eq!(obj["specversion"], "1.0");
        // Attribute names: lower-case a-z and 0-9, at most 20 characters (§3.1.1).
        for name in obj.keys() {
            assert!(
                name.len() <= 20
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
                "{name}"
            );
        }
        // `time` is RFC 3339; JSON `data` is embedded as JSON, not as a string (JSON format §3.1).
        assert!(obj["time"]
            .as_str()
            .unwrap()
            .parse::<jiff_like::Rfc3339>()
            .is_ok());
        assert_eq!(obj["datacontenttype"], "application/json");
        assert!(obj["data"].is_object());
        assert_eq!(obj.len(), 8, "{obj:?}");
    }

    #[test]
    fn reads_the_specs_own_example() {
        // The JSON event format spec's example (§5), minus its extension attributes.
        let example = r#"{
            "specversion" : "1.0",
            "type" : "com.example.someevent",
            "source" : "/mycontext",
            "subject": "larger-context",
            "id" : "C234-1234-1234",
            "time" : "2018-04-05T17:31:00Z",
            "datacontenttype" : "application/json",
            "data" : { "appinfoA" : "abc", "appinfoB" : 123, "appinfoC" : true }
        }"#;
        let e: CloudEvent = serde_json::from_str(example).unwrap();
        assert_eq!(e.kind, "com.example.someevent");
        assert_eq!(e.data["appinfoB"], 123);
        let back: Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(example).unwrap());
    }

    /// Just enough RFC 3339 (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`) to check what the database writes.
    mod jiff_like {
        pub struct Rfc3339;
        impl std::str::FromStr for Rfc3339 {
            type Err = ();
            fn from_str(s: &str) -> Result<Self, ()> {
                let b = s.as_bytes();
                let digits = |r: std::ops::Range<usize>| {
                    b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit))
                };
                let ok = b.len() >= 20
                    && digits(0..4)
                    && b[4] == b'-'
                    && digits(5..7)
                    && b[7] == b'-'
                    && digits(8..10)
                    && b[10] == b'T'
                    && digits(11..13)
                    && b[13] == b':'
                    && digits(14..16)
                    && b[16] == b':'
                    && digits(17..19)
                    && (s.ends_with('Z') || s[s.len() - 6..].starts_with(['+', '-']));
                ok.then_some(Rfc3339).ok_or(())
            }
        }
    }
}
