//! Transfer ids: 128 random bits, shown as 32 lowercase hex digits.
//!
//! An id names a transfer in the journal, in URLs and in tool results. It is unguessable but
//! not secret: knowing it grants nothing without the session key.

use std::{fmt, str::FromStr};

use data_encoding::HEXLOWER_PERMISSIVE;
use rand::RngCore;

/// The opaque, unguessable id of one transfer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransferId(pub [u8; 16]);

impl TransferId {
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        TransferId(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&HEXLOWER_PERMISSIVE.encode(&self.0))
    }
}

impl fmt::Debug for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TransferId({self})")
    }
}

/// The string is not 32 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("a transfer id is 32 hexadecimal digits")]
pub struct BadTransferId;

impl FromStr for TransferId {
    type Err = BadTransferId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = HEXLOWER_PERMISSIVE.decode(s.trim().as_bytes()).map_err(|_| BadTransferId)?;
        Ok(TransferId(bytes.try_into().map_err(|_| BadTransferId)?))
    }
}

impl serde::Serialize for TransferId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for TransferId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for TransferId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TransferId".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[0-9a-f]{32}$",
            "description": "A transfer id: 32 lowercase hex digits."
        })
    }
}
