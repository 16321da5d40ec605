//! Properties of the parsers that face the network, written once and checked two ways: by the
//! cargo-fuzz targets in `fuzz/` (libFuzzer, nightly) and by proptest in the normal test suite
//! (`tests/it/fuzz_properties.rs`). Each `check_*` function takes arbitrary bytes, must never panic
//! except when a property is violated, and panics with a message when one is.
//!
//! See docs/fuzzing.md for how to run them and what has been run.

use crate::wire;
use crate::wire::legacy::{self, ClientFrame, HEADER_LEN, MAX_BODY};
use crate::wire::line::{read_line, LineError};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use tokio::io::{AsyncRead, BufReader, ReadBuf};

/// Protocol v1 decoding: `decode_client` and `decode_server` never panic, and whatever decodes
/// encodes to one line that decodes to the same message.
pub fn check_protocol_decode(data: &[u8]) {
    if let Ok(m) = wire::decode_client(data) {
        let mut line = Vec::new();
        wire::encode(&m, &mut line);
        assert_eq!(line.pop(), Some(b'\n'));
        assert!(!line.contains(&b'\n'), "an encoded message is one line");
        let again = wire::decode_client(&line).expect("a re-encoded client message decodes");
        assert_eq!(again, m, "client message round trip");
    }
    if let Ok(m) = wire::decode_server(data) {
        let mut line = Vec::new();
        wire::encode(&m, &mut line);
        assert_eq!(line.pop(), Some(b'\n'));
        assert!(!line.contains(&b'\n'), "an encoded message is one line");
        let again = wire::decode_server(&line).expect("a re-encoded server message decodes");
        assert_eq!(again, m, "server message round trip");
    }
}

/// The original's framing: `decode_header` decides as early as it can and never changes its mind
/// (a refused prefix stays refused, a decided header ignores what follows), `parse_client_body`
/// never panics and reads back what it parsed, and a frame of any body reads back that body.
pub fn check_legacy_frame(data: &[u8]) {
    // Header, byte by byte as it arrives.
    let full = legacy::decode_header(data);
    let mut refused = None;
    for end in 0..=data.len().min(HEADER_LEN) {
        let verdict = legacy::decode_header(&data[..end]);
        match (&refused, &verdict) {
            (Some(first), Ok(_)) => {
                panic!("prefix of {end} bytes accepted after a shorter one was refused ({first:?})")
            }
            (None, Err(e)) => refused = Some(*e),
            _ => {}
        }
        if end < HEADER_LEN {
            assert!(
                !matches!(verdict, Ok(Some(_))),
                "decided before {HEADER_LEN} bytes"
            );
        }
        if let Ok(Some(len)) = verdict {
            assert!(len <= MAX_BODY);
            assert_eq!(full, verdict, "bytes after the header changed the verdict");
        }
    }
    // Body.
    if let Ok(ClientFrame::Result(r)) = legacy::parse_client_body(data) {
        let text = format!("[R]{},{},{:?}", r.even_sum, r.odd_sum, r.pi);
        match legacy::parse_client_body(text.as_bytes()) {
            Ok(ClientFrame::Result(again)) => {
                assert_eq!((again.even_sum, again.odd_sum), (r.even_sum, r.odd_sum));
                assert!(
                    again.pi.to_bits() == r.pi.to_bits() || (again.pi.is_nan() && r.pi.is_nan()),
                    "π {} read back as {}",
                    r.pi,
                    again.pi
                );
            }
            other => panic!("{text:?} read back as {other:?}"),
        }
    }
    // A frame of this body, delivered in pieces, reads back whole.
    if data.len() <= MAX_BODY {
        let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
        let frame = legacy::encode_frame(data);
        let mut reader = Pieces { data: &frame, step };
        let body = block_on(legacy::read_frame(&mut reader));
        assert_eq!(
            body.ok().flatten().as_deref(),
            Some(data),
            "frame round trip"
        );
    }
}

/// Reading lines with a length limit, whatever the size of the pieces the bytes arrive in: the
/// first byte picks the piece size and the next two the limit; the rest is the stream. The lines
/// read are exactly those of the input, up to the first line longer than the limit (an error), and
/// an unterminated last line is reported as truncated.
pub fn check_line_reader(data: &[u8]) {
    let (Some(&step), Some(&m0), Some(&m1)) = (data.first(), data.get(1), data.get(2)) else {
        return;
    };
    let step = usize::from(step).max(1);
    let max = usize::from(u16::from_le_bytes([m0, m1]) % 1024);
    let stream = &data[3..];

    // What a correct reader returns, from splitting the whole input at once.
    let mut expected: Vec<Result<&[u8], &str>> = Vec::new();
    let mut rest = stream;
    loop {
        match rest.iter().position(|&b| b == b'\n') {
            Some(pos) if pos > max => {
                expected.push(Err("too long"));
                break;
            }
            Some(pos) => {
                expected.push(Ok(&rest[..pos]));
                rest = &rest[pos + 1..];
            }
            None if rest.len() > max => {
                expected.push(Err("too long"));
                break;
            }
            None if rest.is_empty() => break,
            None => {
                expected.push(Err("truncated"));
                break;
            }
        }
    }

    let mut reader = BufReader::with_capacity(step.min(64), Pieces { data: stream, step });
    let (mut line, mut complete) = (Vec::new(), false);
    let mut got: Vec<Result<Vec<u8>, &str>> = Vec::new();
    loop {
        match block_on(read_line(&mut reader, &mut line, &mut complete, max)) {
            Ok(true) => got.push(Ok(line.clone())),
            Ok(false) => break,
            Err(LineError::TooLong(_)) => {
                got.push(Err("too long"));
                break;
            }
            Err(LineError::Truncated) => {
                got.push(Err("truncated"));
                break;
            }
            Err(LineError::Io(e)) => panic!("in-memory reads do not fail: {e}"),
        }
    }
    let expected: Vec<Result<Vec<u8>, &str>> = expected
        .into_iter()
        .map(|r| r.map(<[u8]>::to_vec))
        .collect();
    assert_eq!(
        got, expected,
        "lines of {stream:?} (max {max}, pieces of {step})"
    );
}

/// An in-memory stream that hands out at most `step` bytes per read, to split frames and lines
/// at every possible place.
struct Pieces<'a> {
    data: &'a [u8],
    step: usize,
}

impl AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.step.min(self.data.len()).min(buf.remaining());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(()))
    }
}

/// Runs a future that never waits (its reads are all in memory) to completion.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checks_pass_on_typical_inputs() {
        for data in [
            &br#"{"type":"hello","version":1,"worker":"w","token":"t"}"#[..],
            br#"{"type":"result","id":"3","a":3000,"b":"3999","even_sum":"1","odd_sum":"2","pi":-0.0}"#,
            br#"{"type":"welcome","version":1,"server":"s","run":1,"terms":null,"chunk":"1000","max_prefetch":64,"heartbeat_s":10.0}"#,
            b"{oops",
            b"",
        ] {
            check_protocol_decode(data);
        }
        for data in [
            &b"[R]249500,250000,3.140592653839794"[..],
            b"12  x",
            b" [R] 1 , 2 , nan ",
            b"!DESCONECTADO",
            b"",
        ] {
            check_legacy_frame(data);
        }
        check_legacy_frame(&legacy::encode_frame(b"[R]1,2,3"));
        for data in [
            &b"\x01\x05\x00ab\ncdefg\n\nxy"[..],
            b"\x03\x02\x00abc\n",
            b"\x07\x10\x00hello\nworld\n",
            b"\x01",
        ] {
            check_line_reader(data);
        }
    }
}
