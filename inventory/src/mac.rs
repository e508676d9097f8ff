//! MAC addresses: the primary key of every machine.
//!
//! Operators paste MACs from switch CLIs, BMC pages and spreadsheets, so parsing accepts the
//! usual spellings (`aa:bb:..`, `AA-BB-..`, Cisco `aabb.ccdd.eeff`, bare hex) and the canonical
//! form is always lower-case with colons.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// A 48-bit Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac([u8; 6]);

impl Mac {
    /// The address with these six octets, in wire order.
    pub const fn new(octets: [u8; 6]) -> Self {
        Mac(octets)
    }

    /// The six octets, in wire order.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }
}

impl FromStr for Mac {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self, Error> {
        let bad = |why| Error::BadMac {
            input: crate::excerpt(input, crate::error::MAX_ECHO),
            why,
        };
        let trimmed = input.trim();
        let hex: String = if trimmed.contains(':') || trimmed.contains('-') {
            let sep = if trimmed.contains(':') { ':' } else { '-' };
            let parts: Vec<&str> = trimmed.split(sep).collect();
            if parts.len() != 6 {
                return Err(bad("expected 6 groups"));
            }
            if parts.iter().any(|p| p.is_empty() || p.len() > 2) {
                return Err(bad("each group must be 1 or 2 hex digits"));
            }
            parts.iter().map(|p| format!("{p:0>2}")).collect()
        } else if trimmed.contains('.') {
            let parts: Vec<&str> = trimmed.split('.').collect();
            if parts.len() != 3 || parts.iter().any(|p| p.len() != 4) {
                return Err(bad("dotted form must be three groups of 4 hex digits"));
            }
            parts.concat()
        } else {
            trimmed.to_string()
        };
        if hex.len() != 12 {
            return Err(bad("expected 12 hex digits"));
        }
        // Before slicing by byte offsets (a multi-byte character would panic there) and
        // before `from_str_radix`, which also takes a leading `+`.
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("not a hexadecimal digit"));
        }
        let mut octets = [0u8; 6];
        for (i, o) in octets.iter_mut().enumerate() {
            *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| bad("not a hexadecimal digit"))?;
        }
        Ok(Mac(octets))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            o[0], o[1], o[2], o[3], o[4], o[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mac({self})")
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// In the API description: a string, six lower-case hex pairs joined by `:` (input also takes
/// `-` separators and upper case, but every answer uses this form).
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Mac {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[0-9a-f]{2}(:[0-9a-f]{2}){5}$"))
            .description(Some("MAC address: six lower-case hex pairs joined by ':'."))
            .examples(["52:54:00:12:34:56"])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Mac {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `csv_import` fuzz target: 12 bytes that are not 12 characters used to
    /// panic (a string sliced inside a character), and `+` passed as a digit.
    #[test]
    fn non_ascii_and_signs_are_refused_not_a_panic() {
        for input in [
            "m\u{59c}\u{4dc}ostneme",
            "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
            "+1+2+3+4+5+6",
            "+1:+2:+3:+4:+5:+6",
        ] {
            let err = input.parse::<Mac>().unwrap_err();
            assert!(
                matches!(err, Error::BadMac { why, .. } if why.contains("hex")),
                "{input:?}: {err}"
            );
        }
    }

    #[test]
    fn accepts_common_spellings() {
        let want = "52:54:00:ab:cd:0e";
        for input in [
            "52:54:00:ab:cd:0e",
            "52:54:00:AB:CD:0E",
            "52-54-00-ab-cd-0e",
            "5254.00ab.cd0e",
            "525400abcd0e",
            " 525400ABCD0E ",
            "52:54:0:ab:cd:e",
        ] {
            assert_eq!(input.parse::<Mac>().unwrap().to_string(), want, "{input}");
        }
    }

    #[test]
    fn rejects_malformed() {
        for input in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:0e:ff",
            "52:54:00:ab:cd:0g",
            "525400abcd0",
            "525400abcd0e0",
            "52:54-00:ab:cd:0e",
            "5254.00ab.cd0",
            "52::00:ab:cd:0e",
            "zz:zz:zz:zz:zz:zz",
            "52:54:00:ab:cd:100",
        ] {
            let err = input.parse::<Mac>().unwrap_err();
            assert!(err.to_string().contains(&format!("{input:?}")), "{err}");
        }
    }

    #[test]
    fn serde_uses_canonical_text() {
        let m: Mac = serde_json::from_str("\"AA-BB-CC-DD-EE-FF\"").unwrap();
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"aa:bb:cc:dd:ee:ff\"");
        assert!(serde_json::from_str::<Mac>("\"nope\"").is_err());
    }
}
