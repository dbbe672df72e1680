//! A publisher that writes MQTT 5 packets byte by byte, for what a conforming client
//! (rumqttc among them) cannot send: user properties that are not clean UTF-8.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// What the broker answered to a publish.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// A PUBACK: the publish was taken.
    Acknowledged,
    /// The broker closed the connection (a malformed packet).
    Closed,
}

fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(
        &u16::try_from(bytes.len())
            .expect("a short string")
            .to_be_bytes(),
    );
    out.extend_from_slice(bytes);
}

fn varint(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut digit = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            digit |= 0x80;
        }
        out.push(digit);
        if n == 0 {
            return;
        }
    }
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    varint(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

fn connect_packet(client_id: &str) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, b"MQTT");
    body.extend_from_slice(&[5, 0x02, 0, 30]); // v5, clean start, keep-alive 30 s
    varint(&mut body, 0); // no properties
    string(&mut body, client_id.as_bytes());
    packet(0x10, &body)
}

/// A QoS 1 PUBLISH (packet id 1) with these user properties, written as given.
fn publish_packet(topic: &str, user: &[(&[u8], &[u8])], payload: &[u8]) -> Vec<u8> {
    let mut props = Vec::new();
    for (k, v) in user {
        props.push(0x26);
        string(&mut props, k);
        string(&mut props, v);
    }
    let mut body = Vec::new();
    string(&mut body, topic.as_bytes());
    body.extend_from_slice(&1u16.to_be_bytes());
    varint(&mut body, props.len());
    body.extend_from_slice(&props);
    body.extend_from_slice(payload);
    packet(0x32, &body)
}

/// Reads one whole packet: its first byte, or `None` when the connection is closed.
async fn read_packet(stream: &mut TcpStream) -> Option<u8> {
    let first = stream.read_u8().await.ok()?;
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let b = stream.read_u8().await.ok()?;
        len |= usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 || shift > 21 {
            break;
        }
    }
    let mut rest = vec![0; len];
    stream.read_exact(&mut rest).await.ok()?;
    Some(first)
}

/// Connects as `client_id`, publishes one QoS 1 message with these user properties on
/// `topic`, and says what the broker answered (within `within` for each step).
///
/// # Panics
///
/// When the broker does not answer the CONNECT with a CONNACK, or answers the publish
/// with something other than a PUBACK or a close.
pub async fn publish(
    addr: &str,
    client_id: &str,
    topic: &str,
    user: &[(&[u8], &[u8])],
    payload: &[u8],
    within: Duration,
) -> Answer {
    let mut stream = timeout(within, TcpStream::connect(addr))
        .await
        .expect("a connection in time")
        .expect("a connection");
    stream.write_all(&connect_packet(client_id)).await.unwrap();
    let connack = timeout(within, read_packet(&mut stream))
        .await
        .expect("a CONNACK in time");
    assert_eq!(connack, Some(0x20), "a CONNACK");
    let _ = stream
        .write_all(&publish_packet(topic, user, payload))
        .await;
    loop {
        match timeout(within, read_packet(&mut stream))
            .await
            .expect("an answer in time")
        {
            None => return Answer::Closed,
            Some(0x40) => return Answer::Acknowledged,
            // A DISCONNECT with a reason code, then the close.
            Some(0xe0) => continue,
            Some(other) => panic!("unexpected packet {other:#04x}"),
        }
    }
}
