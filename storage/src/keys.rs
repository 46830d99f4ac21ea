//! Key layout.
//!
//! `sys` column family:
//!
//! | key | value |
//! |---|---|
//! | `t/<tenant>` | `TenantRecord` |
//! | `k/<key id>` | `ApiKeyRecord` |
//! | `K/<len><tenant><key id>` | empty: index of a tenant's keys |
//! | `l/<key id>` | `u64`: when the key last authenticated a request, in ms since the Unix epoch |
//! | `n/<tenant>` | `NetworkPolicyRecord` |
//! | `a/<seq: u64 big-endian>` | `AuditEntry` of the platform audit log |
//! | `h/audit` | `AuditHead` of the platform audit log |
//!
//! Tenant key space. The keys below are relative: the tenant's key space (see `placement`)
//! puts them in the column family of its tier, after the tenant prefix that only the `shared`
//! tier has. `<len>` is one byte holding the length of the id that follows, so no id can be a
//! prefix of another and range scans stay inside one conversation:
//!
//! | key | value |
//! |---|---|
//! | `u<user>` | `UserRecord` |
//! | `c<conv>` | `ConversationRecord` |
//! | `x<len><user><conv>` | empty: the conversations a user is a member of |
//! | `m<len><conv><seq: u64 big-endian>` | `MessageRecord` |
//! | `i<len><conv><client_msg_id>` | `u64` seq: the idempotency index |
//! | `r<len><conv><user>` | `u64` seq: the user's read marker |
//! | `a<seq: u64 big-endian>` | `AuditEntry` of the tenant's audit log |
//! | `b` | `BrandingRecord` |
//! | `h` | `AuditHead` of the tenant's audit log |
//! | `k` | 32-byte key of masked exports (HMAC-SHA256 pseudonyms) |

use crate::audit::AuditKeys;

pub const SYS_CF: &str = "sys";
pub const TENANT_CF_PREFIX: &str = "t.";
/// The column family of every tenant on the `shared` tier.
pub const SHARED_CF: &str = "shared";
/// The column family of a dedicated tenant's own database. (RocksDB's `default` column family
/// has no handle in the Rust binding's multi-threaded mode, so the data gets a named one.)
pub const DEDICATED_CF: &str = "tenant";

/// The prefix of a `shared` tenant's keys: its id, length-prefixed, so that no tenant's
/// prefix is a prefix of another's.
pub fn shared_tenant_prefix(tenant: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(tenant.len() + 1);
    push_len_prefixed(&mut key, tenant);
    key
}

/// Reads the tenant id back from a key of the `shared` column family.
pub fn tenant_of_shared_key(key: &[u8]) -> Option<&str> {
    let len = usize::from(*key.first()?);
    std::str::from_utf8(key.get(1..1 + len)?).ok()
}

pub fn tenant_cf_name(tenant: &str) -> String {
    format!("{TENANT_CF_PREFIX}{tenant}")
}

pub fn sys_tenant(tenant: &str) -> Vec<u8> {
    [b"t/", tenant.as_bytes()].concat()
}

pub const SYS_TENANT_PREFIX: &[u8] = b"t/";

pub fn sys_key(key_id: &str) -> Vec<u8> {
    [b"k/", key_id.as_bytes()].concat()
}

pub fn sys_key_last_used(key_id: &str) -> Vec<u8> {
    [b"l/", key_id.as_bytes()].concat()
}

pub fn sys_network_policy(tenant: &str) -> Vec<u8> {
    [b"n/", tenant.as_bytes()].concat()
}

pub(crate) fn platform_audit_keys() -> AuditKeys {
    AuditKeys {
        entry_prefix: b"a/".to_vec(),
        head: b"h/audit".to_vec(),
    }
}

pub fn sys_tenant_key_index(tenant: &str, key_id: &str) -> Vec<u8> {
    let mut key = sys_tenant_key_index_prefix(tenant);
    key.extend_from_slice(key_id.as_bytes());
    key
}

pub fn sys_tenant_key_index_prefix(tenant: &str) -> Vec<u8> {
    let mut key = b"K/".to_vec();
    push_len_prefixed(&mut key, tenant);
    key
}

/// Builds keys relative to one tenant's key space.
#[derive(Debug, Clone, Copy, Default)]
pub struct TenantKeys;

impl TenantKeys {
    fn start(&self, tag: u8) -> Vec<u8> {
        let mut key = Vec::with_capacity(48);
        key.push(tag);
        key
    }

    pub fn user(&self, user: &str) -> Vec<u8> {
        let mut key = self.start(b'u');
        key.extend_from_slice(user.as_bytes());
        key
    }

    pub fn users_prefix(&self) -> Vec<u8> {
        self.start(b'u')
    }

    pub fn conversation(&self, conv: &str) -> Vec<u8> {
        let mut key = self.start(b'c');
        key.extend_from_slice(conv.as_bytes());
        key
    }

    pub fn conversations_prefix(&self) -> Vec<u8> {
        self.start(b'c')
    }

    pub fn membership(&self, user: &str, conv: &str) -> Vec<u8> {
        let mut key = self.memberships_prefix(user);
        key.extend_from_slice(conv.as_bytes());
        key
    }

    pub fn memberships_prefix(&self, user: &str) -> Vec<u8> {
        let mut key = self.start(b'x');
        push_len_prefixed(&mut key, user);
        key
    }

    pub fn message(&self, conv: &str, seq: u64) -> Vec<u8> {
        let mut key = self.messages_prefix(conv);
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }

    pub fn messages_prefix(&self, conv: &str) -> Vec<u8> {
        let mut key = self.start(b'm');
        push_len_prefixed(&mut key, conv);
        key
    }

    pub fn idempotency(&self, conv: &str, client_msg_id: &str) -> Vec<u8> {
        let mut key = self.start(b'i');
        push_len_prefixed(&mut key, conv);
        key.extend_from_slice(client_msg_id.as_bytes());
        key
    }

    pub(crate) fn audit_keys(&self) -> AuditKeys {
        AuditKeys {
            entry_prefix: self.start(b'a'),
            head: self.start(b'h'),
        }
    }

    pub fn branding(&self) -> Vec<u8> {
        self.start(b'b')
    }

    pub fn masking_key(&self) -> Vec<u8> {
        self.start(b'k')
    }

    pub fn read_marker(&self, conv: &str, user: &str) -> Vec<u8> {
        let mut key = self.start(b'r');
        push_len_prefixed(&mut key, conv);
        key.extend_from_slice(user.as_bytes());
        key
    }
}

/// Appends `id` preceded by its length in one byte. Ids are validated to at most 128 bytes
/// (tenant ids 63), so the length always fits.
fn push_len_prefixed(key: &mut Vec<u8>, id: &str) {
    let len = u8::try_from(id.len()).expect("ids are at most 255 bytes long");
    key.push(len);
    key.extend_from_slice(id.as_bytes());
}

/// Returns the smallest key greater than every key that starts with `prefix`, for use as an exclusive
/// upper bound of a prefix scan. `None` when no such key exists (the prefix is all 0xFF).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_prefixes_do_not_overlap() {
        let keys = TenantKeys;
        let short = keys.messages_prefix("a");
        let long = keys.message("ab", 1);
        assert!(!long.starts_with(&short));
    }

    #[test]
    fn message_keys_sort_by_seq() {
        let keys = TenantKeys;
        assert!(keys.message("c", 255) < keys.message("c", 256));
        assert!(keys.message("c", 1) < keys.message("c", u64::MAX));
    }

    #[test]
    fn shared_prefixes_do_not_overlap() {
        let short = shared_tenant_prefix("a");
        let long = shared_tenant_prefix("ab");
        assert!(!long.starts_with(&short));
        assert_eq!(tenant_of_shared_key(&[long, TenantKeys.user("u")].concat()), Some("ab"));
    }

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end(b"ab").unwrap(), b"ac");
        assert_eq!(prefix_end(&[1, 0xFF]).unwrap(), vec![2]);
        assert_eq!(prefix_end(&[0xFF]), None);
    }
}
