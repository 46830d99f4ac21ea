//! Validated identifiers. A value of these types has passed the character and length rules of
//! the protocol, so keys built from it are unambiguous (the length fits in one prefix byte).

use std::{fmt, sync::Arc};

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid {kind} id {value:?}: {rule}")]
pub struct IdError {
    pub kind: &'static str,
    pub value: String,
    pub rule: &'static str,
}

/// Tenant id: `[a-z0-9][a-z0-9-]{0,62}`. It is part of column family names and host names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TenantId(Arc<str>);

/// User id chosen by the tenant: `[A-Za-z0-9._@-]{1,128}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UserId(Arc<str>);

/// Conversation id: the same rule as user ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConvId(Arc<str>);

const TENANT_RULE: &str = "expected 1 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit";
const NAME_RULE: &str = "expected 1 to 128 characters of A-Z, a-z, 0-9, '.', '_', '@' and '-'";

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-')
}

impl TenantId {
    pub fn parse(value: &str) -> Result<Self, IdError> {
        let mut chars = value.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if first_ok && rest_ok && value.len() <= 63 {
            Ok(TenantId(value.into()))
        } else {
            Err(IdError {
                kind: "tenant",
                value: value.into(),
                rule: TENANT_RULE,
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! name_id {
    ($ty:ident, $kind:literal) => {
        impl $ty {
            pub fn parse(value: &str) -> Result<Self, IdError> {
                if !value.is_empty() && value.len() <= 128 && value.chars().all(is_name_char) {
                    Ok($ty(value.into()))
                } else {
                    Err(IdError {
                        kind: $kind,
                        value: value.into(),
                        rule: NAME_RULE,
                    })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

name_id!(UserId, "user");
name_id!(ConvId, "conversation");

macro_rules! display_id {
    ($($ty:ident),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}

display_id!(TenantId, UserId, ConvId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_id_rules() {
        assert!(TenantId::parse("acme").is_ok());
        assert!(TenantId::parse("0-bank-2").is_ok());
        assert!(TenantId::parse(&"a".repeat(63)).is_ok());
        for bad in ["", "-acme", "Acme", "ac_me", "t.acme", &"a".repeat(64)] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn user_id_rules() {
        assert!(UserId::parse("alice@example.com").is_ok());
        assert!(UserId::parse(&"u".repeat(128)).is_ok());
        for bad in ["", "a b", "a/b", "é", &"u".repeat(129)] {
            assert!(UserId::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
