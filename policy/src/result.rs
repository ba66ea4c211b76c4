//! The evaluation result: anchore's decision fields, its table, and the same rows as plain JSON.

use jiff::Timestamp;
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
    /// The policies decided (or no mapping matched, which is STOP).
    PolicyEvaluation,
    /// A whitelisted image rule matched.
    Whitelisted,
    /// A blacklisted image rule matched.
    Blacklisted,
}

/// The whitelist item that suppressed a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhitelistRef {
    /// Whitelist id.
    pub whitelist_id: String,
    /// Whitelist name.
    pub whitelist_name: Option<String>,
    /// Item id.
    pub matched_rule_id: String,
}

/// One fired trigger (or errored rule).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Image id.
    pub image_id: String,
    /// `registry/repository:tag`.
    pub repo_tag: String,
    /// Trigger instance id (what whitelist items match).
    pub trigger_id: String,
    /// Gate name.
    pub gate: String,
    /// Trigger name.
    pub trigger: String,
    /// What was found.
    pub check_output: String,
    /// The rule's action (WARN for a rule that could not be evaluated).
    pub gate_action: Action,
    /// The whitelist item that suppressed this row, if any.
    pub whitelisted: Option<WhitelistRef>,
    /// Policy the rule belongs to.
    pub policy_id: String,
    /// Rule id, when the bundle gave one.
    pub rule_id: Option<String>,
    /// The rule could not be evaluated (e.g. its data is unavailable).
    pub error: bool,
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

/// The result of evaluating one bundle against one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// anchore's table form.
    pub table: Table,
    /// The same rows as plain JSON objects.
    pub rows: Vec<Row>,
}

impl Table {
    pub(crate) fn of(rows: &[Row]) -> Table {
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
    /// Plain-text table for terminals: the header and one tab-separated line per row.
    pub fn table_text(&self) -> String {
        let mut out = TABLE_HEADER.join("\t");
        for row in &self.table.rows {
            out.push('\n');
            let cells: Vec<String> = row
                .iter()
                .map(|c| match c {
                    Value::String(s) => s.clone(),
                    Value::Object(o) => o
                        .get("matched_rule_id")
                        .and_then(Value::as_str)
                        .unwrap_or("true")
                        .to_string(),
                    other => other.to_string(),
                })
                .collect();
            out.push_str(&cells.join("\t"));
        }
        out
    }
}
