//! Masking for exports that leave production, such as copies for test environments.
//!
//! Ids and names become pseudonyms: a kind prefix and the first 12 bytes of
//! HMAC-SHA256(tenant masking key, kind || 0x00 || value), in hex. The same value maps to the
//! same pseudonym everywhere in an export and in every later export of the tenant, so
//! references between lines still match. Without the key, a pseudonym can be neither computed
//! from a guessed value nor inverted. Every string in a message body is replaced by
//! [`REDACTED`] and every number by 0, while object keys, arrays, nesting, booleans and
//! `null` stay as they are.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use bulkhead_storage::MASKING_KEY_BYTES;

/// Replacement of every string in a masked message body. A fixed text also hides the lengths
/// of the original strings.
pub const REDACTED: &str = "redacted";

/// Bytes of the HMAC output kept in a pseudonym. 96 bits make a collision between two values
/// of one tenant unlikely (about 2^-32 with 2^32 values), and 24 hex digits keep ids short.
const PSEUDONYM_BYTES: usize = 12;

/// Maps the ids and names of one tenant to pseudonyms with the tenant's masking key.
#[derive(Clone)]
pub struct Masker {
    mac: Hmac<Sha256>,
}

impl Masker {
    pub fn new(key: &[u8; MASKING_KEY_BYTES]) -> Self {
        let mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
        Masker { mac }
    }

    /// Returns the pseudonym of a user id, such as `u-3f9c…`. It is a valid user id.
    pub fn user_id(&self, id: &str) -> String {
        self.pseudonym("user", "u-", id)
    }

    /// Returns the pseudonym of a conversation id, such as `c-81d0…`. It is a valid
    /// conversation id.
    pub fn conversation_id(&self, id: &str) -> String {
        self.pseudonym("conversation", "c-", id)
    }

    /// Returns the pseudonym of a `client_msg_id`. Distinct ids stay distinct, so the
    /// idempotency index of an imported copy still works.
    pub fn client_msg_id(&self, id: &str) -> String {
        self.pseudonym("client_msg_id", "m-", id)
    }

    pub fn display_name(&self, name: &str) -> String {
        self.pseudonym("display_name", "name-", name)
    }

    pub fn conversation_name(&self, name: &str) -> String {
        self.pseudonym("conversation_name", "group-", name)
    }

    /// Computes the pseudonym of `value`. The kind goes into the MAC, so that a user and a
    /// conversation with the same id get unrelated pseudonyms.
    fn pseudonym(&self, kind: &str, prefix: &str, value: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(kind.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        format!("{prefix}{}", hex::encode(&digest[..PSEUDONYM_BYTES]))
    }
}

/// Replaces every string in `value` with [`REDACTED`] and every number with 0, keeping the
/// object keys, arrays, nesting, booleans and `null`.
pub fn redact_body(value: &mut Value) {
    match value {
        Value::String(text) => *text = REDACTED.to_owned(),
        Value::Number(number) => *number = 0.into(),
        Value::Array(items) => items.iter_mut().for_each(redact_body),
        Value::Object(fields) => fields.values_mut().for_each(redact_body),
        Value::Null | Value::Bool(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_storage::{ConvId, UserId};
    use serde_json::json;

    #[test]
    fn pseudonyms_are_stable_and_keyed() {
        let masker = Masker::new(&[1; MASKING_KEY_BYTES]);
        let other_key = Masker::new(&[2; MASKING_KEY_BYTES]);

        assert_eq!(masker.user_id("alice"), masker.user_id("alice"));
        assert_ne!(masker.user_id("alice"), masker.user_id("bob"));
        assert_ne!(masker.user_id("alice"), other_key.user_id("alice"));
        assert_ne!(masker.user_id("x")[2..], masker.conversation_id("x")[2..], "kinds are separated");
    }

    #[test]
    fn pseudonyms_are_valid_ids() {
        let masker = Masker::new(&[7; MASKING_KEY_BYTES]);
        let long = "a".repeat(128);

        assert!(UserId::parse(&masker.user_id(&long)).is_ok());
        assert!(ConvId::parse(&masker.conversation_id(&long)).is_ok());
        assert!(masker.client_msg_id(&long).len() <= 128);
    }

    #[test]
    fn redaction_keeps_structure() {
        let mut body = json!({
            "text": "call me at 555-0100",
            "n": 42,
            "price": 9.5,
            "tags": ["alice", {"nested": "bob"}, true, null],
        });

        redact_body(&mut body);

        let expected = json!({
            "text": REDACTED,
            "n": 0,
            "price": 0,
            "tags": [REDACTED, {"nested": REDACTED}, true, null],
        });
        assert_eq!(body, expected);
    }
}
