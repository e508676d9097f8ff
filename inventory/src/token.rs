//! API tokens. Only a SHA-256 of each token is stored: the tokens are 256-bit random values, so a
//! fast hash is enough (no password stretching needed) and a stolen database grants nothing.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Mac, Timestamp};

/// Whom a token speaks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum TokenRole {
    /// Full access to `/api/v1`.
    Operator,
    /// One machine's installer or OS (config, progress, registration).
    Machine {
        /// The machine.
        mac: Mac,
    },
    /// A dashboard login (`/ui`): operator rights until `expires`, checked on every use; the
    /// secret is the session cookie's value, and logout deletes the record.
    Session {
        /// When the session stops being accepted.
        expires: Timestamp,
    },
}

/// A stored token, under the key [`hash_token`] gives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Whom it speaks for; flattened into the JSON object.
    #[serde(flatten)]
    pub role: TokenRole,
    /// When it was created.
    pub created: Timestamp,
    /// What the token is for, shown to operators.
    pub label: String,
}

/// The key a token is stored and looked up under: SHA-256 of the token's UTF-8 bytes, as 64
/// lowercase hex digits.
pub fn hash_token(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            super::hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
