//! Message bodies that carry their send time and a tag of the sending tenant, so that a
//! receiver can measure the delivery latency and notice a message of another tenant.

use serde::Deserialize;
use serde_json::{json, Value};

/// Bytes of a tagged body other than the padding, the tag's 16 hex digits and the digits of
/// `t`.
const TAGGED_OVERHEAD: usize = r#"{"o":"","p":"","t":}"#.len();

/// Smallest tagged body: the overhead, the tag and the 20 digits of the largest u64.
pub const MIN_TAGGED_BODY_BYTES: usize = TAGGED_OVERHEAD + 16 + 20;

/// Returns a random tag for a tenant of this run. Two tenants of one run collide with a
/// chance of about one in 2^64.
pub fn new_tenant_tag() -> u64 {
    rand::random()
}

/// Builds a body of exactly `body_bytes` bytes as compact JSON:
/// `{"o":"<tag as 16 hex digits>","p":"xx…","t":t_ns}`. Bodies shorter than
/// [`MIN_TAGGED_BODY_BYTES`] can come out longer.
pub fn tagged_body(tenant_tag: u64, body_bytes: usize, t_ns: u64) -> Value {
    let digits = t_ns.checked_ilog10().map_or(1, |log| log as usize + 1);
    let padding = body_bytes.saturating_sub(TAGGED_OVERHEAD + 16 + digits);
    json!({"o": format!("{tenant_tag:016x}"), "p": "x".repeat(padding), "t": t_ns})
}

/// The fields of a tagged body that receivers read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaggedStamp {
    /// Send time in nanoseconds since the run-wide origin.
    pub sent_ns: u64,
    pub tenant_tag: u64,
}

#[derive(Deserialize)]
struct RawStamp<'a> {
    o: &'a str,
    t: u64,
}

/// Reads the send time and tenant tag of a body's JSON text, or `None` when it has no
/// valid stamp.
pub fn read_tagged(body_json: &str) -> Option<TaggedStamp> {
    let raw: RawStamp = serde_json::from_str(body_json).ok()?;
    let tenant_tag = u64::from_str_radix(raw.o, 16).ok()?;
    Some(TaggedStamp {
        sent_ns: raw.t,
        tenant_tag,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_body_has_requested_size() {
        for t_ns in [0, 9, 123_456_789, u64::MAX] {
            for size in [MIN_TAGGED_BODY_BYTES, 256, 1024] {
                let body = tagged_body(u64::MAX, size, t_ns);

                assert_eq!(body.to_string().len(), size, "t_ns {t_ns}");
            }
        }
    }

    #[test]
    fn tagged_body_reads_back() {
        let body = tagged_body(0xabc, 128, 42).to_string();

        let stamp = read_tagged(&body);

        assert_eq!(
            stamp,
            Some(TaggedStamp {
                sent_ns: 42,
                tenant_tag: 0xabc
            })
        );
    }

    #[test]
    fn untagged_body_has_no_stamp() {
        assert_eq!(read_tagged(r#"{"p":"x","t":5}"#), None);
        assert_eq!(read_tagged(r#"{"o":"not hex","t":5}"#), None);
    }
}
