//! A minimal HTTP/1.0 client for `piswarm status` and `piswarm stop`: one request to the
//! dashboard's API on a plain TCP connection (the dashboard speaks HTTP without TLS, normally on
//! loopback), so the binary needs no HTTP client library.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// The most of an answer that is read.
const MAX_RESPONSE: u64 = 16 << 20;
const TIMEOUT: Duration = Duration::from_secs(30);

/// Sends `method path` to `addr` (HOST:PORT) and returns the status code and the body.
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let mut head =
            format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\n");
        if let Some(token) = token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        if method == "POST" {
            head.push_str("Content-Length: 0\r\n");
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.take(MAX_RESPONSE).read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = timeout(TIMEOUT, exchange).await.map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer within 30 s")
    })??;
    let text = String::from_utf8_lossy(&raw);
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer");
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(bad)?;
    Ok((status, body.to_string()))
}
