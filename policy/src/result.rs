//! The evaluation result: anchore's decision fields, its table, and the same rows as plain JSON.

use std::borrow::Cow;
use std::sync::Arc;

use jiff::Timestamp;
use serde::ser::{SerializeStruct, SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::model::{Action, ImageRule, Mapping};

/// anchore's result table header.
pub const TABLE_HEADER: [&str; 9] = [
    "Image_Id",
    "Repo_Tag",
    "Trigger_Id",
    "Gate",
    "Trigger",
    "Check_Output",
    "Gate_Action",
    "Whitelisted",
    "Policy_Id",
];

/// Pass (GO or WARN) or fail (STOP), as the external API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Final action GO or WARN.
    Pass,
    /// Final action STOP.
    Fail,
}

/// Why the final action is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The policies of the matched mapping decided.
    PolicyEvaluation,
    /// No mapping selects the image: GO, anchore's fall-through decision (anchore reports it as
    /// `policy_evaluation` with a "No mapping rule matched" warning; fathom says so in the reason). The
    /// admission webhook decides such images by `services.webhook.unmapped`.
    NoMatchingMapping,
    /// A whitelisted image rule matched.
    Whitelisted,
    /// A blacklisted image rule matched.
    Blacklisted,
}

/// The whitelist item that suppressed a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhitelistRef {
    /// Whitelist id.
    pub whitelist_id: Arc<str>,
    /// Whitelist name.
    pub whitelist_name: Option<Arc<str>>,
    /// Item id.
    pub matched_rule_id: Arc<str>,
}

/// One fired trigger (or errored rule). The fields repeated across rows (image, policy and rule ids, the
/// trigger id shared by every rule firing on the same match) are shared, not copied per row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Image id.
    pub image_id: Arc<str>,
    /// `registry/repository:tag`.
    pub repo_tag: Arc<str>,
    /// Trigger instance id (what whitelist items match).
    pub trigger_id: Arc<str>,
    /// Gate name (the catalog's: never copied per row).
    pub gate: Cow<'static, str>,
    /// Trigger name (the catalog's).
    pub trigger: Cow<'static, str>,
    /// What was found (shared by every rule firing the same message on the same match).
    pub check_output: Arc<str>,
    /// The rule's action (WARN for a rule that could not be evaluated).
    pub gate_action: Action,
    /// The whitelist item that suppressed this row, if any (shared by every row it suppresses).
    pub whitelisted: Option<Arc<WhitelistRef>>,
    /// Policy the rule belongs to.
    pub policy_id: Arc<str>,
    /// Rule id, when the bundle gave one.
    pub rule_id: Option<Arc<str>>,
    /// The rule could not be evaluated (e.g. its data is unavailable).
    pub error: bool,
    /// For a rule that could not be evaluated: the action it is configured with (the row itself counts
    /// as WARN, as anchore has it). The admission webhook counts an unevaluable STOP as STOP
    /// (`services.webhook.unevaluable`), so missing data never admits what the rule would stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unevaluable_action: Option<Action>,
}

/// One policy's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDecision {
    /// Policy id.
    pub policy_id: String,
    /// Lowest action among its non-whitelisted rows; GO when none.
    pub action: Action,
}

/// anchore's table: header plus one row per fired trigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// [`TABLE_HEADER`].
    pub header: Vec<String>,
    /// Rows in header order; `Whitelisted` is `false` or the whitelist item.
    pub rows: Vec<Vec<Value>>,
}

/// The result of evaluating one bundle against one image. Serialized with anchore's `table` (built from
/// the rows while writing, never kept: a large bundle's table would double the evaluation's cost).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Evaluation {
    /// pass or fail.
    pub status: Status,
    /// STOP, WARN or GO.
    pub final_action: Action,
    /// Why.
    pub final_action_reason: Reason,
    /// Bundle id.
    pub bundle_id: String,
    /// Digest of the canonical bundle (the cache key's bundle part).
    pub bundle_digest: String,
    /// Image digest.
    pub image_digest: String,
    /// Image id.
    pub image_id: String,
    /// `registry/repository:tag`.
    pub repo_tag: String,
    /// The clock the evaluation used.
    pub evaluated_at: Timestamp,
    /// The mapping that selected the policies; `None` means no mapping matched (STOP).
    pub matched_mapping_rule: Option<Mapping>,
    /// The whitelisted image rule that matched.
    pub matched_whitelisted_images_rule: Option<ImageRule>,
    /// The blacklisted image rule that matched.
    pub matched_blacklisted_images_rule: Option<ImageRule>,
    /// Per-policy decisions, in mapping order.
    pub policy_decisions: Vec<PolicyDecision>,
    /// The same rows as plain JSON objects.
    pub rows: Vec<Row>,
}

impl Table {
    fn of(rows: &[Row]) -> Table {
        let rows = rows
            .iter()
            .map(|r| {
                let whitelisted = match &r.whitelisted {
                    Some(w) => json!(w),
                    None => Value::Bool(false),
                };
                vec![
                    json!(r.image_id),
                    json!(r.repo_tag),
                    json!(r.trigger_id),
                    json!(r.gate),
                    json!(r.trigger),
                    json!(r.check_output),
                    json!(r.gate_action.as_str()),
                    whitelisted,
                    json!(r.policy_id),
                ]
            })
            .collect();
        Table {
            header: TABLE_HEADER.iter().map(|h| h.to_string()).collect(),
            rows,
        }
    }
}

impl Evaluation {
    /// anchore's table form of [`Evaluation::rows`].
    pub fn table(&self) -> Table {
        Table::of(&self.rows)
    }

    /// Plain-text table for terminals: the header and one tab-separated line per row.
    pub fn table_text(&self) -> String {
        let mut out = TABLE_HEADER.join("\t");
        for r in &self.rows {
            let whitelisted = r
                .whitelisted
                .as_ref()
                .map_or("false", |w| &*w.matched_rule_id);
            let cells = [
                &*r.image_id,
                &r.repo_tag,
                &r.trigger_id,
                &*r.gate,
                &*r.trigger,
                &r.check_output,
                r.gate_action.as_str(),
                whitelisted,
                &r.policy_id,
            ];
            out.push('\n');
            out.push_str(&cells.join("\t"));
        }
        out
    }
}

impl Serialize for Evaluation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_struct("Evaluation", 16)?;
        m.serialize_field("status", &self.status)?;
        m.serialize_field("final_action", &self.final_action)?;
        m.serialize_field("final_action_reason", &self.final_action_reason)?;
        m.serialize_field("bundle_id", &self.bundle_id)?;
        m.serialize_field("bundle_digest", &self.bundle_digest)?;
        m.serialize_field("image_digest", &self.image_digest)?;
        m.serialize_field("image_id", &self.image_id)?;
        m.serialize_field("repo_tag", &self.repo_tag)?;
        m.serialize_field("evaluated_at", &self.evaluated_at)?;
        m.serialize_field("matched_mapping_rule", &self.matched_mapping_rule)?;
        m.serialize_field(
            "matched_whitelisted_images_rule",
            &self.matched_whitelisted_images_rule,
        )?;
        m.serialize_field(
            "matched_blacklisted_images_rule",
            &self.matched_blacklisted_images_rule,
        )?;
        m.serialize_field("policy_decisions", &self.policy_decisions)?;
        m.serialize_field("table", &TableView(&self.rows))?;
        m.serialize_field("rows", &self.rows)?;
        m.end()
    }
}

/// Writes [`Table`]'s shape straight from the rows.
struct TableView<'a>(&'a [Row]);

/// One row of [`TableView`] in header order.
struct RowView<'a>(&'a Row);

impl Serialize for TableView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_struct("Table", 2)?;
        m.serialize_field("header", &TABLE_HEADER)?;
        m.serialize_field("rows", &RowsView(self.0))?;
        m.end()
    }
}

struct RowsView<'a>(&'a [Row]);

impl Serialize for RowsView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(RowView))
    }
}

impl Serialize for RowView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut t = s.serialize_tuple(9)?;
        t.serialize_element(&r.image_id)?;
        t.serialize_element(&r.repo_tag)?;
        t.serialize_element(&r.trigger_id)?;
        t.serialize_element(&r.gate)?;
        t.serialize_element(&r.trigger)?;
        t.serialize_element(&r.check_output)?;
        t.serialize_element(r.gate_action.as_str())?;
        match &r.whitelisted {
            Some(w) => t.serialize_element(w)?,
            None => t.serialize_element(&false)?,
        }
        t.serialize_element(&r.policy_id)?;
        t.end()
    }
}
