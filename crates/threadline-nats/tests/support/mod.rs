//! Shared by the malformed-header tests: a raw publisher, clients whose events are
//! recorded, a reconnect that can be held back.

#![allow(dead_code)]

pub mod raw;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event};
use tokio::sync::mpsc;
use tokio::time::timeout;

pub const ADDR: &str = "127.0.0.1:4222";

/// What a client reported through its event callback, in order.
#[derive(Clone, Default)]
pub struct Events {
    log: Arc<Mutex<Vec<String>>>,
}

impl Events {
    pub fn all(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub fn count(&self, event: &str) -> usize {
        self.all().iter().filter(|e| *e == event).count()
    }

    /// Waits until `event` has been reported `n` times in all, within `within`.
    pub async fn wait_for(&self, event: &str, n: usize, within: Duration) -> bool {
        timeout(within, async {
            while self.count(event) < n {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .is_ok()
    }
}

/// Holds back the client's reconnects while closed: a test can then be sure that what
/// the server routed meanwhile went to the dropped connection.
#[derive(Clone, Default)]
pub struct Gate {
    closed: Arc<AtomicBool>,
}

impl Gate {
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    pub fn open(&self) {
        self.closed.store(false, Ordering::SeqCst);
    }
}

/// A client on the local NATS recording its events (and, with a gate, reconnecting only
/// while the gate is open); `None` (after a loud SKIP) when NATS is unreachable.
pub async fn client(test: &str, gate: Option<Gate>) -> Option<(Client, Events)> {
    let events = Events::default();
    let log = events.log.clone();
    let mut options = ConnectOptions::new()
        .event_callback(move |event: Event| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(event.to_string());
            }
        })
        .connection_timeout(Duration::from_secs(3));
    if let Some(gate) = gate {
        options = options.reconnect_to_server_callback(move |servers, _| {
            let closed = gate.closed.clone();
            async move {
                while closed.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                servers.first().map(|s| async_nats::ReconnectToServer {
                    addr: s.addr.clone(),
                    delay: Some(Duration::ZERO),
                })
            }
        });
    }
    let client = threadline_testkit::connect(
        test,
        "NATS",
        ADDR,
        Duration::from_secs(3),
        options.connect(ADDR),
    )
    .await?;
    Some((client, events))
}

/// The raw publisher, or `None` (after a loud SKIP) when NATS is unreachable.
pub async fn raw(test: &str) -> Option<raw::RawPublisher> {
    threadline_testkit::connect(
        test,
        "NATS",
        ADDR,
        Duration::from_secs(3),
        raw::RawPublisher::connect(ADDR),
    )
    .await
}

/// An unbounded channel of payloads, for handlers that report what they ran for.
pub fn seen() -> (
    mpsc::UnboundedSender<String>,
    mpsc::UnboundedReceiver<String>,
) {
    mpsc::unbounded_channel()
}

/// Makes sure the server has registered `sub` (a `flush` only writes the `SUB` out):
/// publishes a probe on the same connection, after the `SUB`, and waits for it. Returns
/// the payloads of what arrived before the probe.
pub async fn live(client: &Client, sub: &mut async_nats::Subscriber, subject: &str) -> Vec<String> {
    use futures_util::StreamExt;
    let probe = format!("probe-{}", threadline_testkit::unique("p", '-'));
    client
        .publish(subject.to_owned(), probe.clone().into())
        .await
        .unwrap();
    let mut before = Vec::new();
    loop {
        let msg = timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("the probe arrives")
            .expect("the subscription is open");
        let payload = String::from_utf8_lossy(&msg.payload).into_owned();
        if payload == probe {
            return before;
        }
        before.push(payload);
    }
}
