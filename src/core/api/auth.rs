//! Bearer-token authentication. Tokens are kept only as SHA-256 digests; a presented token is hashed and
//! compared with every accepted digest in constant time, so neither timing nor a memory dump gives a
//! token away.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// The accepted tokens, as digests.
#[derive(Clone, Default)]
pub struct Tokens {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} accepted)", self.digests.len())
    }
}

impl Tokens {
    /// From configuration entries: each a token or `sha256:<64 hex>` (validated by the config loader;
    /// a malformed digest is an error here too rather than a token nobody can present).
    pub fn from_config(entries: &[String]) -> anyhow::Result<Tokens> {
        let mut digests = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let digest = match entry.strip_prefix("sha256:") {
                Some(hex_digits) => {
                    let bytes = hex::decode(hex_digits).map_err(|e| {
                        anyhow::anyhow!("services.api.tokens[{i}]: not a sha256 digest ({e})")
                    })?;
                    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                        anyhow::anyhow!("services.api.tokens[{i}]: a sha256 digest has 32 bytes")
                    })?
                }
                None => Sha256::digest(entry.as_bytes()).into(),
            };
            digests.push(digest);
        }
        Ok(Tokens { digests })
    }

    /// Whether `token` is accepted. Every digest is compared, hit or miss, so the time taken does not
    /// depend on which one matched.
    pub fn accepts(&self, token: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut ok = subtle::Choice::from(0);
        for digest in &self.digests {
            ok |= digest.ct_eq(&presented);
        }
        ok.into()
    }

    /// Checks a request's `Authorization` header.
    pub fn check(&self, request: &Request) -> Result<(), ApiError> {
        let value = request
            .headers()
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token>"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| ApiError::unauthorized("Authorization must be \"Bearer <token>\""))?;
        if self.accepts(token) {
            Ok(())
        } else {
            Err(ApiError::unauthorized("the token is not accepted"))
        }
    }
}

/// Middleware: rejects requests without an accepted token.
pub async fn require_token(
    State(tokens): State<Tokens>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    tokens.check(&request)?;
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_hashed_tokens_are_accepted_and_others_are_not() {
        let plain = "correct-horse-battery-staple";
        let hashed = "another-long-token-value";
        let digest = hex::encode(Sha256::digest(hashed.as_bytes()));
        let tokens = Tokens::from_config(&[plain.to_string(), format!("sha256:{digest}")]).unwrap();
        assert!(tokens.accepts(plain));
        assert!(tokens.accepts(hashed));
        assert!(!tokens.accepts("correct-horse-battery-stapl"));
        assert!(!tokens.accepts(""));
        assert!(!tokens.accepts(&format!("sha256:{digest}")));
        assert!(!Tokens::default().accepts(plain));
    }

    #[test]
    fn malformed_digests_are_rejected() {
        assert!(Tokens::from_config(&["sha256:abc".into()]).is_err());
        assert!(Tokens::from_config(&[format!("sha256:{}", "z".repeat(64))]).is_err());
    }
}
