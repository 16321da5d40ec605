//! The shared token, as a type that cannot leak by accident.
//!
//! [`Secret`] has no `Display`, and its `Debug` prints `Secret(<redacted>)`, so a token can never
//! end up in a log line, an error message, results.json or the dashboard by formatting a config
//! struct. Comparisons run in constant time. The only way to the bytes is [`Secret::expose`].

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use subtle::ConstantTimeEq;

/// A secret string (the token shared by a coordinator and its workers).
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself. Call only to send or compare it, never to print it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `given` is this secret, in time that depends only on the lengths.
    pub fn matches(&self, given: &[u8]) -> bool {
        // `subtle` compares without data-dependent branches; only the lengths can show.
        bool::from(given.ct_eq(self.0.as_bytes()))
    }

    /// Parses a token from the command line or the environment: it must not be empty (an empty
    /// token would let in every worker that sends none).
    pub fn parse_arg(s: &str) -> Result<Secret, String> {
        if s.is_empty() {
            Err("the token must not be empty".into())
        } else {
            Ok(Secret::new(s))
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.matches(other.0.as_bytes())
    }
}

impl Eq for Secret {}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_string())
    }
}

/// On the wire a secret is a plain JSON string (the `token` of a `hello`).
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed_and_compared_by_value() {
        let s = Secret::new("hunter2-token");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(Secret(<redacted>))");
        assert!(s.matches(b"hunter2-token"));
        assert!(!s.matches(b"hunter2-tokeN"));
        assert!(!s.matches(b""));
        assert_eq!(s, Secret::from("hunter2-token"));
        assert_ne!(s, Secret::from("other"));
        assert!(Secret::parse_arg("").is_err());
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"hunter2-token\"");
        let back: Secret = serde_json::from_str("\"hunter2-token\"").unwrap();
        assert_eq!(back, s);
    }
}
