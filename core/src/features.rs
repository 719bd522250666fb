//! Protocol extensions (§2.6): named in HELLO's `features` (what the worker's host can do) and
//! WELCOME's (what the gateway will use on this connection), so that v1 peers that know none
//! of them keep working. An extension's frames and flags are sent only on a connection whose
//! WELCOME listed it.

use crate::error::CloseCode;
use crate::handshake::HandshakeError;
use crate::limits::{MAX_FEATURES, MAX_FEATURE_LEN};

/// Upgraded connections (WebSocket and others) carried over a stream.
pub const UPGRADE: &str = "upgrade";
/// TRAILERS frames, both directions.
pub const TRAILERS: &str = "trailers";
/// INFORMATIONAL (1xx) heads from workers.
pub const INFORMATIONAL: &str = "informational";

/// A set of the extensions this crate knows; unknown names are ignored when read.
///
/// ```
/// use vyx_core::features::Features;
/// let offered = Features::from_names(["trailers", "some-later-extension"]);
/// assert_eq!(offered, Features::TRAILERS);
/// assert_eq!(offered.names(), vec!["trailers".to_string()]);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Features(u8);

/// Every known extension, by name, in the order they are listed.
const KNOWN: [(&str, Features); 3] = [
    (UPGRADE, Features::UPGRADE),
    (TRAILERS, Features::TRAILERS),
    (INFORMATIONAL, Features::INFORMATIONAL),
];

impl Features {
    pub const NONE: Features = Features(0);
    pub const UPGRADE: Features = Features(1);
    pub const TRAILERS: Features = Features(2);
    pub const INFORMATIONAL: Features = Features(4);

    /// What this gateway implements end to end and answers in WELCOME. An extension joins
    /// this set when the gateway carries it; until then no worker is told it may use it.
    pub const fn implemented_by_gateway() -> Features {
        Features::UPGRADE
            .union(Features::TRAILERS)
            .union(Features::INFORMATIONAL)
    }

    /// The known extensions among `names`.
    pub fn from_names<I, S>(names: I) -> Features
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = Features::NONE;
        for name in names {
            if let Some((_, f)) = KNOWN.iter().find(|(n, _)| *n == name.as_ref()) {
                set = set.union(*f);
            }
        }
        set
    }

    /// The names of the set, in a fixed order (what WELCOME sends).
    pub fn names(self) -> Vec<String> {
        KNOWN
            .iter()
            .filter(|(_, f)| self.contains(*f))
            .map(|(n, _)| n.to_string())
            .collect()
    }

    pub const fn contains(self, other: Features) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn union(self, other: Features) -> Features {
        Features(self.0 | other.0)
    }

    pub const fn intersection(self, other: Features) -> Features {
        Features(self.0 & other.0)
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Checks a `features` list against its bounds (§2.6): at most [`MAX_FEATURES`] names, each
/// 1..=[`MAX_FEATURE_LEN`] bytes, no name twice. `code` is the refusal's close code (4001 for
/// HELLO, 4005 for WELCOME).
pub fn validate_list(names: &[String], code: CloseCode) -> Result<(), HandshakeError> {
    let bad = |msg: String| Err(HandshakeError::new(code, msg));
    if names.len() > MAX_FEATURES {
        return bad(format!(
            "features lists {} names; at most {MAX_FEATURES} are allowed",
            names.len()
        ));
    }
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() || name.len() > MAX_FEATURE_LEN {
            return bad(format!(
                "features[{i}] is {} bytes; 1..={MAX_FEATURE_LEN} are allowed",
                name.len()
            ));
        }
        if names[..i].contains(name) {
            return bad(format!("features names {name:?} twice"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_read_known_names_and_list_them_in_one_order() {
        let f = Features::from_names(["informational", "x", "upgrade"]);
        assert!(f.contains(Features::UPGRADE) && f.contains(Features::INFORMATIONAL));
        assert!(!f.contains(Features::TRAILERS));
        assert_eq!(f.names(), ["upgrade", "informational"]);
        assert_eq!(
            f.intersection(Features::TRAILERS.union(Features::UPGRADE)),
            Features::UPGRADE
        );
        assert!(Features::from_names(Vec::<String>::new()).is_empty());
    }

    #[test]
    fn lists_past_their_bounds_are_refused_with_the_given_code() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let code = CloseCode::BadHello;
        assert!(validate_list(&names(&["upgrade", "trailers"]), code).is_ok());
        let twice = validate_list(&names(&["upgrade", "upgrade"]), code).unwrap_err();
        assert!(twice.message.contains("twice"), "{twice}");
        assert!(validate_list(&names(&[""]), code).is_err());
        assert!(validate_list(&names(&[&"x".repeat(33)]), code).is_err());
        assert!(validate_list(&names(&[&"x".repeat(32)]), code).is_ok());
        let many: Vec<String> = (0..17).map(|i| format!("f{i}")).collect();
        assert_eq!(validate_list(&many, code).unwrap_err().code, code);
        assert!(validate_list(&many[..16], code).is_ok());
    }
}
