//! The one place where stored values are encoded and decoded.
//!
//! Layout of every value: one format version byte, then the postcard encoding of the record.
//! postcard is compact and has a specified wire format, but it is not self-describing, so a
//! record type may only change together with a new version byte and a decoder for the old one.

use serde::{de::DeserializeOwned, Serialize};

use crate::{Result, StorageError};

/// Format version written in front of every value by this release.
pub const FORMAT_VERSION: u8 = 1;

/// Encodes `value` as `[FORMAT_VERSION, postcard bytes…]`.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION];

    // Serializing our own record types into a Vec cannot fail: they contain no maps with
    // non-string keys and no types postcard rejects.
    let body = postcard::to_stdvec(value).expect("stored records are postcard-serializable");
    out.extend_from_slice(&body);
    out
}

/// Decodes a value written by [`encode`]. `what` names the record type in errors.
pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T> {
    let Some((&version, body)) = bytes.split_first() else {
        return Err(StorageError::Decode {
            what,
            reason: "empty value".into(),
        });
    };
    if version != FORMAT_VERSION {
        return Err(StorageError::Decode {
            what,
            reason: format!("unknown format version {version}, this release reads {FORMAT_VERSION}"),
        });
    }
    postcard::from_bytes(body).map_err(|e| StorageError::Decode {
        what,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MessageRecord;

    #[test]
    fn roundtrip_keeps_every_field() {
        let record = MessageRecord {
            seq: 7,
            from: "alice".into(),
            client_msg_id: "m-1".into(),
            ts_ms: 1_700_000_000_000,
            body_json: r#"{"text":"hi"}"#.into(),
        };

        let bytes = encode(&record);
        assert_eq!(bytes[0], FORMAT_VERSION);
        let decoded: MessageRecord = decode("message", &bytes).unwrap();
        assert_eq!(decoded, record);
    }

    #[test]
    fn unknown_version_is_rejected() {
        let mut bytes = encode(&42u64);
        bytes[0] = FORMAT_VERSION + 1;
        let err = decode::<u64>("seq", &bytes).unwrap_err();
        assert!(err.to_string().contains("unknown format version"), "{err}");
    }

    #[test]
    fn empty_value_is_rejected() {
        assert!(decode::<u64>("seq", &[]).is_err());
    }
}
