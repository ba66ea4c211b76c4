//! The `fathom-signature` header: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` with the
//! endpoint's secret. The timestamp is inside the MAC, so a receiver that checks it against its clock
//! rejects a replayed request; the hex MAC is compared in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header's name.
pub const HEADER: &str = "fathom-signature";

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], t: u64, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length, so `new_from_slice` cannot fail.
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts every key length"),
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header value signing `body` at unix time `t` with `secret`.
pub fn sign(secret: &[u8], t: u64, body: &[u8]) -> String {
    let tag = mac(secret, t, body).finalize().into_bytes();
    format!("t={t},v1={}", hex::encode(tag))
}

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The header is not `t=<digits>,v1=<hex>`.
    #[error("malformed fathom-signature header (want t=<unix seconds>,v1=<hex>)")]
    Malformed,
    /// The timestamp is further than the tolerance from the receiver's clock (a replay, or a skewed clock).
    #[error("signature timestamp {t} is more than {tolerance_secs}s from now ({now})")]
    Stale {
        /// The header's `t`.
        t: u64,
        /// The receiver's clock.
        now: u64,
        /// The allowed distance.
        tolerance_secs: u64,
    },
    /// No `v1` matches the body under the secret.
    #[error("signature does not match the body")]
    Mismatch,
}

/// Verifies `header` over `body` with `secret` at unix time `now`, accepting timestamps within
/// `tolerance_secs` of it (what a receiver does; fathom's tests and the demo's receiver use it).
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: u64,
    tolerance_secs: u64,
) -> Result<(), VerifyError> {
    let mut t = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<u64>().ok(),
            Some(("v1", v)) => candidates.push(hex::decode(v).map_err(|_| VerifyError::Malformed)?),
            _ => {}
        }
    }
    let t = t.ok_or(VerifyError::Malformed)?;
    if candidates.is_empty() {
        return Err(VerifyError::Malformed);
    }
    if t.abs_diff(now) > tolerance_secs {
        return Err(VerifyError::Stale {
            t,
            now,
            tolerance_secs,
        });
    }
    let expected = mac(secret, t, body);
    if candidates
        .iter()
        .any(|c| expected.clone().verify_slice(c).is_ok())
    {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_vector_from_pythons_hmac_module() {
        // python3 -c 'import hmac,hashlib; print(hmac.new(b"whsec_test", b"1700000000.{\"a\":1}",
        //   hashlib.sha256).hexdigest())'
        assert_eq!(
            sign(b"whsec_test", 1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
        );
    }

    #[test]
    fn matches_pythons_hmac_module_run_now() {
        // Python's hmac is the reference: a body with non-ASCII bytes and a long key (hashed first).
        let secret = "k".repeat(100);
        let body = "{\"subject\":\"sha256:ab\",\"note\":\"café ✓\"}";
        let script = "import hmac,hashlib,sys; k,t,b=sys.argv[1:4]; \
                      print(hmac.new(k.encode(), (t+'.'+b).encode(), hashlib.sha256).hexdigest())";
        let out = std::process::Command::new("python3")
            .args(["-c", script, &secret, "1712345678", body])
            .output()
            .expect("python3 (the reference implementation) runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want = format!(
            "t=1712345678,v1={}",
            String::from_utf8_lossy(&out.stdout).trim()
        );
        assert_eq!(
            sign(secret.as_bytes(), 1_712_345_678, body.as_bytes()),
            want
        );
    }

    #[test]
    fn verify_accepts_its_own_and_rejects_tampering_replays_and_garbage() {
        let header = sign(b"s", 1000, b"body");
        assert_eq!(verify(b"s", &header, b"body", 1010, 300), Ok(()));
        assert_eq!(
            verify(b"s", &header, b"bodY", 1010, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(b"t", &header, b"body", 1010, 300),
            Err(VerifyError::Mismatch)
        );
        assert!(matches!(
            verify(b"s", &header, b"body", 2000, 300),
            Err(VerifyError::Stale { .. })
        ));
        assert_eq!(
            verify(b"s", "v1=00", b"body", 1000, 300),
            Err(VerifyError::Malformed)
        );
        assert_eq!(
            verify(b"s", "t=1000,v1=zz", b"body", 1000, 300),
            Err(VerifyError::Malformed)
        );
    }
}
