//! Wire protocol v1: newline-delimited JSON messages, their types, and their encoding.
//!
//! This module owns the message shapes and nothing else: no sockets, no state. docs/protocol.md is
//! its specification for people; the two must agree.
//!
//! Integers that may exceed 2^53 (term indexes, interval ids, sums) travel as decimal strings; on
//! input, a plain JSON integer is accepted too (handy when typing messages into `nc`).

use crate::wire::secret::Secret;
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The longest line, in bytes without its newline, that either side accepts.
pub const MAX_LINE: usize = 64 * 1024;

/// The `max_prefetch` a coordinator announces unless told otherwise (`--max-prefetch`;
/// docs/protocol.md §3): the one definition of this default.
pub const DEFAULT_MAX_PREFETCH: u32 = 64;

/// An unsigned integer that travels as a decimal string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dec<T>(pub T);

impl<T: fmt::Display> Serialize for Dec<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de, T> Deserialize<'de> for Dec<T>
where
    T: FromStr + TryFrom<u64>,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<T: FromStr + TryFrom<u64>> de::Visitor<'_> for V<T> {
            type Value = Dec<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a non-negative integer as a decimal string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dec<T>, E> {
                if v.is_empty() || v.len() > 40 || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(E::custom(format!(
                        "'{v}' is not a non-negative decimal integer"
                    )));
                }
                v.parse()
                    .map(Dec)
                    .map_err(|_| E::custom(format!("'{v}' is out of range")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dec<T>, E> {
                T::try_from(v)
                    .map(Dec)
                    .map_err(|_| E::custom("integer out of range"))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dec<T>, E> {
                Err(E::custom(format!("{v} is negative")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Dec<T>, E> {
                Err(E::custom(format!(
                    "{v} is not an integer; send integers as decimal strings"
                )))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Messages from a worker to the coordinator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// First message of every session.
    Hello {
        version: u32,
        worker: String,
        /// Never printed: `Secret`'s `Debug` is redacted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<Secret>,
        /// What the client is, for the worker table: `piswarm/<version>` for `piswarm worker`,
        /// `browser/<name>` for the `/join` page; optional.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<String>,
    },
    /// Asks for `count` more assignments (credit: the server sends at most that many `assign`s).
    Request { count: u32 },
    /// The result of one assigned interval.
    Result(WorkResult),
    /// Keeps an otherwise quiet session alive.
    Heartbeat {},
    /// The worker leaves; intervals it still holds go back to the queue.
    Bye {},
}

/// What a worker computed for one interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkResult {
    pub id: Dec<u64>,
    pub a: Dec<u64>,
    pub b: Dec<u64>,
    pub even_sum: Dec<u128>,
    pub odd_sum: Dec<u128>,
    /// `4·Σₙ₌ₐᵇ (−1)ⁿ/(2n+1)`: a JSON number, printed with enough digits to round-trip.
    pub pi: f64,
    /// Seconds spent computing.
    #[serde(default)]
    pub duration_s: f64,
    /// Set when the worker sends a result again after a reconnect (it computed the interval on an
    /// earlier connection and saw no acknowledgement).
    #[serde(default, skip_serializing_if = "is_false")]
    pub resend: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Messages from the coordinator to a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The handshake succeeded.
    Welcome {
        version: u32,
        server: String,
        run: u64,
        terms: Option<Dec<u64>>,
        chunk: Dec<u64>,
        /// The most assignments a worker may hold at once.
        max_prefetch: u32,
        /// Send something (a `heartbeat` will do) at least this often.
        heartbeat_s: f64,
        /// The run's identity, unique across stores (32 hex digits): results computed for another
        /// `run_uid` are never sent to this run. Absent from servers older than this field.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_uid: Option<String>,
        /// The π kernel of the run (`"oct"` or `"quad"`, docs/protocol.md §4.7): a worker computes
        /// its partials with it, so that the run's bits do not depend on who computed what.
        /// Absent from servers older than this field, whose runs all use `"quad"`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kernel: Option<String>,
    },
    /// One interval to compute.
    Assign {
        id: Dec<u64>,
        a: Dec<u64>,
        b: Dec<u64>,
        /// The lease: report within this many seconds or the interval is given to someone else.
        lease_s: f64,
        /// A backup copy: another worker holds this interval too, and the first result to become
        /// durable counts (the other is answered `duplicate`, never an error). Informational: a
        /// client computes it like any other assignment.
        #[serde(default, skip_serializing_if = "is_false")]
        backup: bool,
    },
    /// A result was received: `accepted` (it counts) or `duplicate` (another result counted first).
    Ack { id: Dec<u64>, status: AckStatus },
    /// Something was wrong; `id` names the interval concerned, if any.
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<Dec<u64>>,
    },
    /// No more work: the job is complete or the server is stopping. The worker should leave.
    Done { reason: DoneReason },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    Accepted,
    Duplicate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DoneReason {
    JobComplete,
    ServerStopping,
}

/// Error codes sent in `error` messages. docs/protocol.md lists which ones close the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The line is not valid JSON (or not UTF-8).
    BadJson,
    /// The message's `type` is not one this version knows.
    UnknownType,
    /// A known message with missing, extra or invalid fields.
    BadMessage,
    /// The line exceeded the maximum length; the connection is closed.
    LineTooLong,
    /// The hello's version is not supported; the connection is closed.
    UnsupportedVersion,
    /// Missing or wrong token; the connection is closed.
    Unauthorized,
    /// A message that is not allowed at this point of the session (e.g. anything before hello).
    OutOfOrder,
    /// A result for an interval the sender does not hold.
    NotAssigned,
    /// A result whose bounds do not match the interval's.
    WrongInterval,
    /// A result whose even or odd sum is wrong.
    WrongSums,
    /// A result whose π partial is not within the verification tolerance (or not finite).
    WrongPi,
    /// The worker sent too many bad results and is refused for the rest of the run.
    Refused,
    /// The server holds its maximum number of connections.
    TooManyConnections,
    /// No hello within the handshake timeout.
    HandshakeTimeout,
    /// Nothing received within the idle timeout.
    IdleTimeout,
    /// The server could not handle the request (e.g. its store failed); try again later.
    Internal,
    /// A plaintext client connected to a server that serves TLS only; the connection is closed.
    TlsRequired,
}

impl ServerMessage {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> ServerMessage {
        ServerMessage::Error {
            code,
            message: message.into(),
            id: None,
        }
    }
}

/// A line could not be decoded into a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    pub code: ErrorCode,
    pub message: String,
}

/// Decodes one line (without its newline) into a client message.
pub fn decode_client(line: &[u8]) -> Result<ClientMessage, DecodeError> {
    decode(line)
}

/// Decodes one line (without its newline) into a server message.
pub fn decode_server(line: &[u8]) -> Result<ServerMessage, DecodeError> {
    decode(line)
}

fn decode<'a, T: Deserialize<'a>>(line: &'a [u8]) -> Result<T, DecodeError> {
    if line.len() > MAX_LINE {
        return Err(DecodeError {
            code: ErrorCode::LineTooLong,
            message: format!(
                "line of {} bytes exceeds the limit of {MAX_LINE}",
                line.len()
            ),
        });
    }
    let line = trim_cr(line);
    match serde_json::from_slice::<T>(line) {
        Ok(m) => Ok(m),
        Err(e) => Err(classify(line, e)),
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Tells a syntax error from an unknown type from a malformed known message (slow path only).
fn classify(line: &[u8], err: serde_json::Error) -> DecodeError {
    let value: serde_json::Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(_) => {
            return DecodeError {
                code: ErrorCode::BadJson,
                message: format!("invalid JSON: {err}"),
            }
        }
    };
    match value.get("type") {
        None => DecodeError {
            code: ErrorCode::BadMessage,
            message: "a message must be a JSON object with a \"type\" field".into(),
        },
        Some(serde_json::Value::String(t))
            if !names_a_variant::<ClientMessage>(t) && !names_a_variant::<ServerMessage>(t) =>
        {
            let shown: String = t.chars().take(40).collect();
            DecodeError {
                code: ErrorCode::UnknownType,
                message: format!("unknown message type '{shown}'"),
            }
        }
        _ => DecodeError {
            code: ErrorCode::BadMessage,
            message: format!("malformed message: {err}"),
        },
    }
}

/// Whether `type_name` is a message type of `T`. Asked of serde itself (which reports an unknown
/// variant as such), so that no list of type names is kept by hand.
fn names_a_variant<T: de::DeserializeOwned>(type_name: &str) -> bool {
    let probe = serde_json::json!({ "type": type_name });
    match serde_json::from_value::<T>(probe) {
        Ok(_) => true,
        Err(e) => !e.to_string().starts_with("unknown variant"),
    }
}

/// Encodes a message as one line, newline included.
pub fn encode<T: Serialize>(message: &T, out: &mut Vec<u8>) {
    // Serialising these types cannot fail: no maps with non-string keys, no non-finite floats
    // (serde_json writes those as null).
    serde_json::to_writer(&mut *out, message).expect("protocol messages always serialise");
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip_client(m: ClientMessage) {
        let mut buf = Vec::new();
        encode(&m, &mut buf);
        assert_eq!(buf.last(), Some(&b'\n'));
        assert_eq!(decode_client(&buf[..buf.len() - 1]).unwrap(), m);
    }

    #[test]
    fn round_trips() {
        round_trip_client(ClientMessage::Hello {
            version: 1,
            worker: "w".into(),
            token: None,
            agent: Some("piswarm/0.1.0".into()),
        });
        round_trip_client(ClientMessage::Request { count: 4 });
        round_trip_client(ClientMessage::Result(WorkResult {
            id: Dec(3),
            a: Dec(3000),
            b: Dec(3999),
            even_sum: Dec(u128::MAX),
            odd_sum: Dec(1),
            pi: 8.333332798032551e-05,
            duration_s: 0.25,
            resend: false,
        }));
        round_trip_client(ClientMessage::Heartbeat {});
        round_trip_client(ClientMessage::Bye {});
        let welcome = ServerMessage::Welcome {
            version: 1,
            server: "piswarm".into(),
            run: 1,
            terms: None,
            chunk: Dec(1000),
            max_prefetch: DEFAULT_MAX_PREFETCH,
            heartbeat_s: 10.0,
            run_uid: Some("0123456789abcdef0123456789abcdef".into()),
            kernel: Some("oct".into()),
        };
        let mut buf = Vec::new();
        encode(&welcome, &mut buf);
        assert_eq!(decode_server(&buf[..buf.len() - 1]).unwrap(), welcome);
    }

    #[test]
    fn hand_typed_messages() {
        let m = decode_client(br#"{"type":"hello","version":1,"worker":"nc"}"#).unwrap();
        assert!(matches!(m, ClientMessage::Hello { .. }));
        assert_eq!(
            decode_client(br#"{"type":"request","count":2}"#).unwrap(),
            ClientMessage::Request { count: 2 }
        );
        // Plain integers are accepted for ids and sums; CRLF from terminals too.
        let r = decode_client(
            b"{\"type\":\"result\",\"id\":0,\"a\":0,\"b\":999,\"even_sum\":249500,\"odd_sum\":\"250000\",\"pi\":3.14}\r",
        )
        .unwrap();
        assert!(matches!(
            r,
            ClientMessage::Result(WorkResult { b: Dec(999), .. })
        ));
    }

    #[test]
    fn errors_are_classified() {
        let code = |l: &[u8]| decode_client(l).unwrap_err().code;
        assert_eq!(code(b"{not json"), ErrorCode::BadJson);
        assert_eq!(code(b"\xff\xfe"), ErrorCode::BadJson);
        assert_eq!(code(br#"{"type":"launch"}"#), ErrorCode::UnknownType);
        assert_eq!(code(br#"[1,2]"#), ErrorCode::BadMessage);
        assert_eq!(code(br#"{"type":"request"}"#), ErrorCode::BadMessage);
        assert_eq!(
            code(br#"{"type":"request","count":-1}"#),
            ErrorCode::BadMessage
        );
        let neg =
            br#"{"type":"result","id":"-1","a":"0","b":"1","even_sum":"0","odd_sum":"1","pi":1}"#;
        assert_eq!(code(neg), ErrorCode::BadMessage);
        let float =
            br#"{"type":"result","id":1.5,"a":"0","b":"1","even_sum":"0","odd_sum":"1","pi":1}"#;
        assert_eq!(code(float), ErrorCode::BadMessage);
        let nan =
            br#"{"type":"result","id":"1","a":"0","b":"1","even_sum":"0","odd_sum":"1","pi":NaN}"#;
        assert_eq!(code(nan), ErrorCode::BadJson);
        let huge = vec![b' '; MAX_LINE + 1];
        assert_eq!(code(&huge), ErrorCode::LineTooLong);
    }

    proptest! {
        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_client(&bytes);
            let _ = decode_server(&bytes);
        }

        #[test]
        fn truncated_messages_are_errors(cut in 0usize..90) {
            let line = br#"{"type":"result","id":"7","a":"7000","b":"7999","even_sum":"1","odd_sum":"2","pi":0.5}"#;
            let cut = cut.min(line.len() - 1);
            prop_assert!(decode_client(&line[..cut]).is_err());
        }

        #[test]
        fn results_round_trip(id in any::<u64>(), a in any::<u64>(), even in any::<u128>(), pi in any::<f64>().prop_filter("finite", |x| x.is_finite())) {
            round_trip_client(ClientMessage::Result(WorkResult {
                id: Dec(id), a: Dec(a), b: Dec(a), even_sum: Dec(even), odd_sum: Dec(0), pi, duration_s: 0.0,
                resend: false,
            }));
        }
    }
}
