//! The crate's error type and the validation error that names where a bundle went wrong.

use serde::{Deserialize, Serialize};

/// One problem in a policy bundle, located by a JSON path such as `$.policies[0].rules[2].params[1].value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationError {
    /// JSON path of the offending value (`$` is the document root).
    pub path: String,
    /// What is wrong there, in words a bundle author can act on.
    pub message: String,
}

impl std::fmt::Display for ValidationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Errors of the policy crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bundle was refused; every problem found is listed.
    #[error("invalid policy bundle: {}", list(.0))]
    InvalidBundle(Vec<ValidationError>),
    /// A result could not be serialized.
    #[error("serializing: {0}")]
    Serialize(#[from] serde_json::Error),
}

fn list(errors: &[ValidationError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<Vec<ValidationError>> for Error {
    fn from(errors: Vec<ValidationError>) -> Self {
        Error::InvalidBundle(errors)
    }
}

/// Result alias of the policy crate.
pub type Result<T> = std::result::Result<T, Error>;
