//! A NATS client written against the wire protocol, for publishing what async-nats
//! refuses to build: header blocks with a non-UTF-8 byte, a space in a name, ...

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

/// One raw connection: `CONNECT` with `"headers":true`, then `HPUB`/`PUB` lines written
/// as given.
pub struct RawPublisher {
    stream: BufReader<TcpStream>,
    out: Vec<u8>,
}

impl RawPublisher {
    pub async fn connect(addr: &str) -> std::io::Result<RawPublisher> {
        let stream = timeout(WAIT, TcpStream::connect(addr)).await??;
        let mut raw = RawPublisher {
            stream: BufReader::new(stream),
            out: Vec::new(),
        };
        let info = raw.line().await?;
        assert!(info.starts_with("INFO "), "{info}");
        raw.out.extend_from_slice(
            br#"CONNECT {"verbose":false,"pedantic":false,"headers":true,"protocol":1,"name":"raw-publisher"}"#,
        );
        raw.out.extend_from_slice(b"\r\n");
        raw.flush().await?;
        Ok(raw)
    }

    /// Queues `HPUB subject <hdr_len> <total_len>\r\n<block><payload>\r\n`: `block` is
    /// the header block exactly as sent (`NATS/1.0\r\n...\r\n\r\n`).
    pub fn hpub(&mut self, subject: &str, block: &[u8], payload: &[u8]) -> &mut Self {
        self.out.extend_from_slice(
            format!(
                "HPUB {subject} {} {}\r\n",
                block.len(),
                block.len() + payload.len()
            )
            .as_bytes(),
        );
        self.out.extend_from_slice(block);
        self.out.extend_from_slice(payload);
        self.out.extend_from_slice(b"\r\n");
        self
    }

    /// Queues a message with one well-formed header `x-correlation-id: <payload>`.
    pub fn good(&mut self, subject: &str, payload: &str) -> &mut Self {
        let block = format!("NATS/1.0\r\nx-correlation-id: {payload}\r\n\r\n");
        self.hpub(subject, block.as_bytes(), payload.as_bytes())
    }

    /// Writes everything queued in one write, then `PING`, and waits for the `PONG`: the
    /// server has then routed every message (to subscribers and to streams' inputs).
    /// Fails on `-ERR`.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.out.extend_from_slice(b"PING\r\n");
        let out = std::mem::take(&mut self.out);
        timeout(WAIT, self.stream.get_mut().write_all(&out)).await??;
        loop {
            let line = self.line().await?;
            if line.starts_with("PONG") {
                return Ok(());
            }
            if line.starts_with("PING") {
                timeout(WAIT, self.stream.get_mut().write_all(b"PONG\r\n")).await??;
                continue;
            }
            if line.starts_with("-ERR") {
                return Err(std::io::Error::other(line));
            }
        }
    }

    async fn line(&mut self) -> std::io::Result<String> {
        let mut buf = Vec::new();
        let n = timeout(WAIT, self.stream.read_until(b'\n', &mut buf)).await??;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(String::from_utf8_lossy(&buf).trim_end().to_owned())
    }
}
