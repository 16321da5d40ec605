//! The original system's wire format: pure framing, no sockets.
//!
//! A frame is a 256-byte header holding the body's length in ASCII decimal digits, padded on the
//! right with spaces, then the UTF-8 body. On connect the server sends the interval, `[a, b]`; the
//! client answers `[R]<evens>,<odds>,<pi>` and then `!DESCONECTADO`, to which the server answers
//! with the raw bytes `msg recebida corretamente` (no header) and closes. docs/protocol.md §13 is
//! the specification for people; `net::legacy` runs the sessions.
//!
//! This module owns the framing ([`decode_header`], [`encode_frame`], [`parse_client_body`]), the
//! frame reader ([`read_frame`]) and the original client's trapezoid constant
//! ([`is_original_trapezoid`]).

use tokio::io::{AsyncRead, AsyncReadExt};

/// Length of every frame's header.
pub const HEADER_LEN: usize = 256;
/// The longest body this server reads (64 KiB); a header announcing more closes the connection.
pub const MAX_BODY: usize = 64 * 1024;
/// The body with which a client says goodbye.
pub const DISCONNECT: &str = "!DESCONECTADO";
/// The body with which the original let any client stop the server; piswarm ignores it.
pub const SHUTDOWN: &str = "!ENCERRAR";
/// The raw bytes (no header) answering a goodbye, as the original server sent them.
pub const DISCONNECT_REPLY: &[u8] = b"msg recebida corretamente";

/// A header that cannot be right, whatever follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("the header is not a decimal length padded on the right with spaces")]
    NotALength,
    #[error("the header announces a body longer than {MAX_BODY} bytes")]
    TooLong,
}

/// Reading one frame failed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("the connection closed in the middle of a frame")]
    Truncated,
    #[error("read error: {0}")]
    Io(#[from] std::io::Error),
}

/// Decodes a header from its first bytes, as they arrive.
///
/// `Ok(Some(len))` once [`HEADER_LEN`] bytes are there (later bytes are not looked at), `Ok(None)`
/// while the bytes so far can still start a valid header, and an error as soon as they cannot:
/// a valid header is one or more ASCII digits, then only spaces, announcing at most [`MAX_BODY`].
pub fn decode_header(bytes: &[u8]) -> Result<Option<usize>, HeaderError> {
    let bytes = &bytes[..bytes.len().min(HEADER_LEN)];
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 && !bytes.is_empty() {
        return Err(HeaderError::NotALength);
    }
    if !bytes[digits..].iter().all(|&b| b == b' ') {
        return Err(HeaderError::NotALength);
    }
    let mut len: usize = 0;
    for &d in &bytes[..digits] {
        len = len * 10 + usize::from(d - b'0');
        if len > MAX_BODY {
            return Err(HeaderError::TooLong);
        }
    }
    Ok((bytes.len() == HEADER_LEN).then_some(len))
}

/// Encodes one frame: the header, then `body`. Written with a single `write_all`, so that a client
/// that reads the header with one `recv(256)` and the body with another gets each whole.
pub fn encode_frame(body: &[u8]) -> Vec<u8> {
    let mut frame = format!("{:<width$}", body.len(), width = HEADER_LEN).into_bytes();
    frame.extend_from_slice(body);
    frame
}

/// The body of the frame that hands out `[a, b]`, as the original wrote it.
pub fn interval_body(a: u64, b: u64) -> String {
    format!("[{a}, {b}]")
}

/// What a legacy client sent, once its frame is decoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ClientFrame {
    /// `[R]<evens>,<odds>,<pi>`.
    Result(LegacyResult),
    /// `!DESCONECTADO`.
    Disconnect,
    /// `!ENCERRAR`.
    Shutdown,
}

/// The three numbers of a `[R]` frame, in the order the client sends them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LegacyResult {
    pub even_sum: u128,
    pub odd_sum: u128,
    pub pi: f64,
}

/// A body that is none of the frames a legacy client may send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BodyError(String);

/// Decodes the body of a frame from a legacy client.
///
/// Surrounding ASCII whitespace is ignored (in the body and in each field). The sums are decimal
/// integers; π is whatever Rust's correctly rounded `f64` parser reads, which covers every float
/// Python writes (`3.140592653839794`, `8.333332798032551e-05`, `-0.0`). A non-finite π parses
/// here and is refused by verification, like any other wrong π.
pub fn parse_client_body(body: &[u8]) -> Result<ClientFrame, BodyError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| BodyError(format!("the body is not UTF-8: {}", shown(body))))?
        .trim_matches(|c: char| c.is_ascii_whitespace());
    if text == DISCONNECT {
        return Ok(ClientFrame::Disconnect);
    }
    if text == SHUTDOWN {
        return Ok(ClientFrame::Shutdown);
    }
    let Some(fields) = text.strip_prefix("[R]") else {
        return Err(BodyError(format!(
            "expected [R]<evens>,<odds>,<pi>, {DISCONNECT} or {SHUTDOWN}, got {}",
            shown(body)
        )));
    };
    let fields: Vec<&str> = fields
        .split(',')
        .map(|f| f.trim_matches(|c: char| c.is_ascii_whitespace()))
        .collect();
    let [even, odd, pi] = fields[..] else {
        return Err(BodyError(format!(
            "a result has three comma-separated fields, got {}: {}",
            fields.len(),
            shown(body)
        )));
    };
    let sum = |field: &str, what: &str| -> Result<u128, BodyError> {
        if field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BodyError(format!(
                "the sum of the {what} is not a decimal integer: {}",
                shown(field.as_bytes())
            )));
        }
        field.parse().map_err(|_| {
            BodyError(format!(
                "the sum of the {what} is out of range: {}",
                shown(field.as_bytes())
            ))
        })
    };
    let even_sum = sum(even, "even numbers")?;
    let odd_sum = sum(odd, "odd numbers")?;
    let pi = pi.parse::<f64>().map_err(|_| {
        BodyError(format!(
            "the π partial is not a number: {}",
            shown(pi.as_bytes())
        ))
    })?;
    Ok(ClientFrame::Result(LegacyResult {
        even_sum,
        odd_sum,
        pi,
    }))
}

/// Up to 60 bytes of untrusted input, quoted and escaped, safe for a log line.
fn shown(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(60)];
    let more = if bytes.len() > cut.len() { "…" } else { "" };
    format!("{:?}{more}", String::from_utf8_lossy(cut))
}

/// Reads one frame: exactly [`HEADER_LEN`] header bytes, then exactly the announced body, however
/// the stream splits them. `Ok(None)` on a clean end of stream before a frame.
///
/// A bad header is refused as soon as it cannot be valid, without waiting for its 256 bytes. Not
/// cancel-safe: callers keep the future alive across `select!` iterations (see [`next_frame`]).
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let mut filled = 0;
    let len = loop {
        let n = reader.read(&mut header[filled..]).await?;
        if n == 0 {
            return if filled == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        filled += n;
        if let Some(len) = decode_header(&header[..filled])? {
            break len;
        }
    };
    let mut body = vec![0u8; len];
    match reader.read_exact(&mut body).await {
        Ok(_) => Ok(Some(body)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(FrameError::Truncated),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    fn header(text: &str) -> Vec<u8> {
        format!("{text:<256}").into_bytes()
    }

    #[test]
    fn headers() {
        assert_eq!(decode_header(&header("12")), Ok(Some(12)));
        assert_eq!(decode_header(&header("0")), Ok(Some(0)));
        assert_eq!(decode_header(&header("000065536")), Ok(Some(MAX_BODY)));
        assert_eq!(decode_header(&header("65537")), Err(HeaderError::TooLong));
        assert_eq!(
            decode_header(&header(&"9".repeat(256))),
            Err(HeaderError::TooLong)
        );
        assert_eq!(decode_header(&header("")), Err(HeaderError::NotALength));
        assert_eq!(decode_header(&header(" 12")), Err(HeaderError::NotALength));
        assert_eq!(decode_header(&header("12 3")), Err(HeaderError::NotALength));
        assert_eq!(decode_header(&header("-1")), Err(HeaderError::NotALength));
        assert_eq!(decode_header(&header("12\t")), Err(HeaderError::NotALength));
        assert_eq!(decode_header(&header("abc")), Err(HeaderError::NotALength));
        // Prefixes: undecided while they can still be valid, refused as soon as they cannot.
        assert_eq!(decode_header(b""), Ok(None));
        assert_eq!(decode_header(b"12  "), Ok(None));
        assert_eq!(decode_header(b"12  x"), Err(HeaderError::NotALength));
        assert_eq!(decode_header(b"1000000"), Err(HeaderError::TooLong));
        // Only the header is looked at.
        let mut long = header("3");
        long.extend_from_slice(b"abc");
        assert_eq!(decode_header(&long), Ok(Some(3)));
    }

    #[test]
    fn frames_are_encoded_as_the_original_did() {
        let frame = encode_frame(interval_body(0, 999).as_bytes());
        assert_eq!(frame.len(), 256 + 8);
        assert_eq!(&frame[..3], b"8  ");
        assert!(frame[1..256].iter().all(|&b| b == b' '));
        assert_eq!(&frame[256..], b"[0, 999]");
        assert_eq!(decode_header(&frame), Ok(Some(8)));
    }

    #[test]
    fn bodies() {
        let result = |even, odd, pi| {
            Ok(ClientFrame::Result(LegacyResult {
                even_sum: even,
                odd_sum: odd,
                pi,
            }))
        };
        assert_eq!(
            parse_client_body(b"[R]249500,250000,3.140592653839794"),
            result(249500, 250000, 3.140592653839794)
        );
        assert_eq!(
            parse_client_body(b"[R]12,34,8.333332798032551e-05"),
            result(12, 34, 8.333332798032551e-05)
        );
        assert_eq!(
            parse_client_body(b"[R]0,1,-8.3e-05\n"),
            result(0, 1, -8.3e-05)
        );
        assert_eq!(parse_client_body(b"[R] 2 , 3 , 1.0 "), result(2, 3, 1.0));
        let max = format!("[R]{},0,0.5", u128::MAX);
        assert_eq!(parse_client_body(max.as_bytes()), result(u128::MAX, 0, 0.5));
        // inf and nan parse; verification refuses them as a wrong π.
        assert!(matches!(
            parse_client_body(b"[R]1,2,nan"),
            Ok(ClientFrame::Result(r)) if r.pi.is_nan()
        ));
        assert_eq!(
            parse_client_body(b"!DESCONECTADO"),
            Ok(ClientFrame::Disconnect)
        );
        assert_eq!(parse_client_body(b"!ENCERRAR"), Ok(ClientFrame::Shutdown));
        for bad in [
            &b""[..],
            b"hello",
            b"[R]",
            b"[R]1,2",
            b"[R]1,2,3,4",
            b"[R]-1,2,3.0",
            b"[R]+1,2,3.0",
            b"[R]1,2,pi",
            b"[R]1.5,2,3.0",
            b"[R],2,3.0",
            b"[R]1,2,",
            b"[r]1,2,3.0",
            b"[R]1,2,3.0\xff",
            b"!desconectado",
        ] {
            assert!(
                parse_client_body(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let overflow = format!("[R]{}0,0,0.5", u128::MAX);
        assert!(parse_client_body(overflow.as_bytes()).is_err());
    }

    /// A reader that hands out at most `step` bytes per read, as a slow network would.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl AsyncRead for Trickle<'_> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let n = self.step.min(self.data.len()).min(buf.remaining());
            buf.put_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Poll::Ready(Ok(()))
        }
    }

    fn read_all(data: &[u8], step: usize) -> Vec<Result<Vec<u8>, String>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut reader = Trickle { data, step };
            let mut frames = Vec::new();
            loop {
                match read_frame(&mut reader).await {
                    Ok(Some(body)) => frames.push(Ok(body)),
                    Ok(None) => break,
                    Err(e) => {
                        frames.push(Err(e.to_string()));
                        break;
                    }
                }
            }
            frames
        })
    }

    #[test]
    fn reading_frames_from_a_stream() {
        let mut stream = encode_frame(b"[R]1,2,3.0");
        stream.extend(encode_frame(b"!DESCONECTADO"));
        for step in [1, 7, 256, 4096] {
            assert_eq!(
                read_all(&stream, step),
                vec![Ok(b"[R]1,2,3.0".to_vec()), Ok(b"!DESCONECTADO".to_vec())]
            );
        }
        let truncated = &stream[..256 + 4];
        assert_eq!(
            read_all(truncated, 1000),
            vec![Err("the connection closed in the middle of a frame".into())]
        );
        assert_eq!(
            read_all(&stream[..100], 1000),
            vec![Err("the connection closed in the middle of a frame".into())]
        );
        // A bad header is refused without waiting for the rest.
        assert_eq!(
            read_all(b"GET / HTTP/1.1\r\n", 1000),
            vec![Err(HeaderError::NotALength.to_string())]
        );
        assert_eq!(read_all(b"", 1), vec![]);
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), step in 1usize..300) {
            let _ = decode_header(&bytes);
            let _ = parse_client_body(&bytes);
            let _ = read_all(&bytes, step);
        }

        #[test]
        fn decoding_plausible_frames_never_panics(
            digits in "[0-9]{0,7}",
            spaces in 0usize..300,
            tail in proptest::collection::vec(any::<u8>(), 0..400),
            step in 1usize..300,
        ) {
            let mut bytes = digits.into_bytes();
            bytes.resize(bytes.len() + spaces, b' ');
            bytes.extend(tail);
            let _ = decode_header(&bytes);
            let _ = read_all(&bytes, step);
            if bytes.len() > HEADER_LEN {
                let _ = parse_client_body(&bytes[HEADER_LEN..]);
            }
        }

        #[test]
        fn headers_of_digits_and_spaces(len in 0usize..=2 * MAX_BODY) {
            let h = header(&len.to_string());
            let decoded = decode_header(&h);
            if len <= MAX_BODY {
                prop_assert_eq!(decoded, Ok(Some(len)));
            } else {
                prop_assert_eq!(decoded, Err(HeaderError::TooLong));
            }
        }

        #[test]
        fn frames_round_trip(body in proptest::collection::vec(any::<u8>(), 0..2000), step in 1usize..600) {
            let frame = encode_frame(&body);
            prop_assert_eq!(read_all(&frame, step), vec![Ok(body)]);
        }

        #[test]
        fn results_round_trip(even in any::<u128>(), odd in any::<u128>(), pi in any::<f64>().prop_filter("finite", |x| x.is_finite())) {
            // Rust's shortest round-trip forms, both plain and scientific, read back exactly.
            for text in [format!("[R]{even},{odd},{pi}"), format!("[R]{even},{odd},{pi:e}")] {
                prop_assert_eq!(
                    parse_client_body(text.as_bytes()),
                    Ok(ClientFrame::Result(LegacyResult { even_sum: even, odd_sum: odd, pi }))
                );
            }
        }
    }
}

/// π as the original Python client computes it: the trapezoidal rule for ∫₀¹ 4/(1+x²) dx with `n`
/// steps, operation for operation as its `trapezio(0, 1, n)`, so that the bits match.
pub fn original_trapezoid(n: u32) -> f64 {
    let f = |x: f64| 4.0 / (1.0 + x * x);
    let h = 1.0 / f64::from(n);
    let mut s = f(0.0) + f(1.0);
    for i in 1..n {
        s += 2.0 * f(f64::from(i) * h);
    }
    (h / 2.0) * s
}

/// Whether `pi` is exactly what a version of the original client sends (n = 1000 or 10000).
pub fn is_original_trapezoid(pi: f64) -> bool {
    static KNOWN: std::sync::OnceLock<[u64; 2]> = std::sync::OnceLock::new();
    KNOWN
        .get_or_init(|| {
            [
                original_trapezoid(1000).to_bits(),
                original_trapezoid(10_000).to_bits(),
            ]
        })
        .contains(&pi.to_bits())
}

#[cfg(test)]
mod trapezoid_tests {
    const PY_10000: f64 = 3.14159265192314;
    const PY_1000: f64 = 3.1415924869231246;

    #[test]
    fn matches_the_values_python_prints() {
        // repr(trapezio(0, 1, 10000)) and repr(trapezio(0, 1, 1000)) in CPython 3.11.
        assert_eq!(super::original_trapezoid(10_000), PY_10000);
        assert_eq!(super::original_trapezoid(1000), PY_1000);
        assert!(super::is_original_trapezoid(PY_10000));
        assert!(!super::is_original_trapezoid(std::f64::consts::PI));
    }
}
