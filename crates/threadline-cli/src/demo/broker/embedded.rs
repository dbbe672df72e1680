//! The in-process queue: bounded, never waits. A full queue refuses the job at once
//! (the warehouse answers 503 with `Retry-After`), so a load the worker cannot keep up
//! with pushes back on the store instead of piling up. Nothing survives the process:
//! at shutdown the queue stops taking jobs and every job it holds is handled before
//! the worker stops.

use std::sync::Arc;

use threadline::Context;
use threadline::json::JsonCarrierMut;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::restore::Restore;
use super::{Env, Job, Pool, Published, ship};

pub(super) struct Publisher {
    tx: mpsc::Sender<Vec<u8>>,
}

impl Publisher {
    pub(super) fn publish(&self, ctx: &Context, job: &Job) -> Published {
        let mut map = match serde_json::to_value(job) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => return Published::refused("the job could not be serialised"),
        };
        let call = ctx.inject(&mut JsonCarrierMut::new(&mut map));
        let bytes = match serde_json::to_vec(&map) {
            Ok(b) => b,
            Err(_) => return Published::refused("the job could not be serialised"),
        };
        match self.tx.try_send(bytes) {
            Ok(()) => Published::Accepted {
                call,
                duplicate: false,
            },
            Err(mpsc::error::TrySendError::Full(_)) => Published::Refused {
                reason: format!(
                    "the embedded queue is full ({} jobs waiting)",
                    self.tx.max_capacity()
                ),
                retry_after: Some(1),
            },
            Err(mpsc::error::TrySendError::Closed(_)) => Published::Refused {
                reason: "the embedded queue is closed (the demo is stopping)".into(),
                retry_after: None,
            },
        }
    }

    /// Jobs waiting, and the bound.
    pub(super) fn waiting(&self) -> (usize, usize) {
        let cap = self.tx.max_capacity();
        (cap - self.tx.capacity(), cap)
    }
}

pub(super) fn start(
    capacity: usize,
    env: Arc<Env>,
    restore: Restore,
    mut stopped: watch::Receiver<bool>,
) -> (Publisher, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(capacity.max(1));
    let task = tokio::spawn(async move {
        let mut pool = Pool::new(&env);
        loop {
            let permit = tokio::select! {
                biased;
                _ = stopped.wait_for(|s| *s) => break,
                p = pool.permit() => p,
            };
            let msg = tokio::select! {
                biased;
                _ = stopped.wait_for(|s| *s) => break,
                m = rx.recv() => m,
            };
            let Some(bytes) = msg else { break };
            let ctx = restore.embedded(&bytes);
            let env = env.clone();
            pool.spawn(permit, async move { ctx.scope(ship(&env, &bytes)).await });
        }
        // No new jobs from now on; every job the queue took is handled before exit.
        rx.close();
        while let Some(bytes) = rx.recv().await {
            let permit = pool.permit().await;
            let ctx = restore.embedded(&bytes);
            let env = env.clone();
            pool.spawn(permit, async move { ctx.scope(ship(&env, &bytes)).await });
        }
        pool.finish().await;
    });
    (Publisher { tx }, task)
}
