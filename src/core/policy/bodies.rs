//! Serialized evaluations kept beside the evaluation cache: a large bundle's result is tens of megabytes
//! of JSON whose writing costs far more than the evaluation, so a cache hit answers with the bytes
//! written for the first answer.

use std::sync::{Arc, Mutex, Weak};

use axum::body::Bytes;
use fathom_policy::Evaluation;

/// The bytes kept at most, all bodies together (the newest are kept).
const KEPT_BYTES: usize = 128 << 20;

/// JSON bodies of cached evaluations, by identity: an evaluation dropped from the cache can never be
/// asked for again, and its body goes with the next insert.
#[derive(Default)]
pub struct Bodies {
    kept: Mutex<Vec<(Weak<Evaluation>, Bytes)>>,
}

impl Bodies {
    /// `evaluation` as JSON; kept for the next call with the same evaluation when `keep`.
    pub fn json(&self, evaluation: &Arc<Evaluation>, keep: bool) -> serde_json::Result<Bytes> {
        if let Some(body) = self.find(evaluation) {
            return Ok(body);
        }
        let body = Bytes::from(serde_json::to_vec(evaluation.as_ref())?);
        if keep && body.len() <= KEPT_BYTES {
            let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
            kept.retain(|(e, _)| e.strong_count() > 0);
            let mut total: usize = kept.iter().map(|(_, b)| b.len()).sum::<usize>() + body.len();
            while total > KEPT_BYTES && !kept.is_empty() {
                total -= kept.remove(0).1.len();
            }
            kept.push((Arc::downgrade(evaluation), body.clone()));
        }
        Ok(body)
    }

    fn find(&self, evaluation: &Arc<Evaluation>) -> Option<Bytes> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.iter()
            .find(|(e, _)| {
                e.strong_count() > 0 && std::ptr::eq(e.as_ptr(), Arc::as_ptr(evaluation))
            })
            .map(|(_, b)| b.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_written_once_per_evaluation_and_equals_its_json() {
        let bundle = fathom_policy::default_bundle();
        let facts = fathom_policy::ImageFacts::default();
        let evaluation = Arc::new(fathom_policy::evaluate(
            bundle,
            &facts,
            jiff::Timestamp::UNIX_EPOCH,
        ));
        let bodies = Bodies::default();
        let first = bodies.json(&evaluation, true).unwrap();
        assert_eq!(first, serde_json::to_vec(evaluation.as_ref()).unwrap());
        let again = bodies.json(&evaluation, true).unwrap();
        assert_eq!(first.as_ptr(), again.as_ptr(), "the kept bytes, not a copy");
        // Another evaluation (equal content, other identity) is written anew.
        let other = Arc::new(evaluation.as_ref().clone());
        assert_ne!(bodies.json(&other, false).unwrap().as_ptr(), first.as_ptr());
    }
}
