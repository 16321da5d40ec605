//! Reading and writing protocol lines on a byte stream, with a hard limit on line length.
//!
//! [`read_line`] is cancel-safe: it keeps a partial line in the caller's buffer, so it can sit in a
//! `select!` next to timers and outboxes without losing bytes.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Reading a line failed.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("line longer than {0} bytes")]
    TooLong(usize),
    #[error("connection closed in the middle of a line")]
    Truncated,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads one line into `line` (cleared first when it holds a complete previous line; the newline is
/// not kept). Returns `Ok(false)` on a clean end of stream between lines.
///
/// At most `max` bytes are buffered: a longer line is an error, whatever follows.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    complete: &mut bool,
    max: usize,
) -> Result<bool, LineError> {
    if *complete {
        line.clear();
        *complete = false;
    }
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return if line.is_empty() {
                Ok(false)
            } else {
                Err(LineError::Truncated)
            };
        }
        match available.iter().position(|&b| b == b'\n') {
            Some(pos) => {
                if line.len() + pos > max {
                    return Err(LineError::TooLong(max));
                }
                line.extend_from_slice(&available[..pos]);
                reader.consume(pos + 1);
                *complete = true;
                return Ok(true);
            }
            None => {
                let n = available.len();
                if line.len() + n > max {
                    return Err(LineError::TooLong(max));
                }
                line.extend_from_slice(available);
                reader.consume(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    async fn lines(input: &[u8], max: usize) -> Vec<Result<Vec<u8>, String>> {
        let mut r = BufReader::with_capacity(4, input);
        let (mut line, mut complete, mut out) = (Vec::new(), false, Vec::new());
        loop {
            match read_line(&mut r, &mut line, &mut complete, max).await {
                Ok(true) => out.push(Ok(line.clone())),
                Ok(false) => break,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    break;
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn splits_limits_and_truncation() {
        assert_eq!(
            lines(b"ab\ncdefg\n\n", 10).await,
            vec![Ok(b"ab".to_vec()), Ok(b"cdefg".to_vec()), Ok(vec![])]
        );
        assert!(lines(b"0123456789ab\n", 10).await[0].is_err());
        assert_eq!(
            lines(b"0123456789\n", 10).await,
            vec![Ok(b"0123456789".to_vec())]
        );
        assert_eq!(
            lines(b"ok\nhalf", 10).await[1],
            Err("connection closed in the middle of a line".into())
        );
    }
}
