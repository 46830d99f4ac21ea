//! Group commit.
//!
//! One thread per database owns every write. Callers hand it a list of operations and await a
//! reply; the thread takes everything that has queued up since its last write, merges it into
//! one `WriteBatch` and writes it once. With `Durability::Fsync` that is one WAL sync for all
//! the sends that arrived together, across conversations and tenants, which is what makes
//! synced writes affordable. Actor threads never block on the disk.

use std::{sync::Arc, thread};

use crossbeam_channel::{Receiver, Sender};
use rocksdb::{MultiThreaded, WriteBatch, WriteOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::{Result, StorageError};

pub(crate) type Db = rocksdb::DBWithThreadMode<MultiThreaded>;

/// The durability a write has before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// The WAL is synced to disk before the acknowledgement: survives a power loss.
    #[default]
    Fsync,
    /// Written to the WAL without a sync: survives a process crash, not a power loss.
    Wal,
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Durability::Fsync => "fsync",
            Durability::Wal => "wal",
        })
    }
}

/// Maximum number of requests merged into one write. It bounds the latency that the last
/// request of a group adds to the first; 1024 is a guess that keeps a group under a few MiB
/// with typical chat messages and may be tuned with benchmarks.
const MAX_GROUP_REQUESTS: usize = 1024;

pub(crate) enum Op {
    Put {
        cf: Arc<str>,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        cf: Arc<str>,
        key: Vec<u8>,
    },
}

impl Op {
    fn cf(&self) -> &str {
        match self {
            Op::Put { cf, .. } | Op::Delete { cf, .. } => cf,
        }
    }
}

struct CommitRequest {
    ops: Vec<Op>,
    reply: oneshot::Sender<Result<()>>,
}

/// Handle to the commit thread. Cloning it is cheap. When the last clone is dropped, the
/// thread writes what was queued, stops, and is joined, so the database it keeps open is closed
/// by the time the drop returns.
#[derive(Clone)]
pub(crate) struct Committer {
    inner: Arc<CommitterInner>,
}

struct CommitterInner {
    tx: Option<Sender<CommitRequest>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for CommitterInner {
    fn drop(&mut self) {
        // Closing the channel ends the thread's receive loop.
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Committer {
    pub(crate) fn start(db: Arc<Db>, durability: Durability) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        let thread = thread::Builder::new()
            .name("bulkhead-commit".into())
            .spawn(move || run(db, durability, rx))
            .expect("failed to spawn the commit thread");
        Committer {
            inner: Arc::new(CommitterInner {
                tx: Some(tx),
                thread: Some(thread),
            }),
        }
    }

    /// Queues `ops` for the next group write and returns once they are durable.
    pub(crate) async fn commit(&self, ops: Vec<Op>) -> Result<()> {
        let (reply, done) = oneshot::channel();
        let tx = self.inner.tx.as_ref().ok_or(StorageError::CommitterStopped)?;
        tx.send(CommitRequest { ops, reply })
            .map_err(|_| StorageError::CommitterStopped)?;
        done.await.map_err(|_| StorageError::CommitterStopped)?
    }
}

fn run(db: Arc<Db>, durability: Durability, rx: Receiver<CommitRequest>) {
    let mut write_options = WriteOptions::default();
    write_options.set_sync(durability == Durability::Fsync);

    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP_REQUESTS {
            match rx.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        write_group(&db, &write_options, group);
    }
    tracing::debug!("commit thread stopped");
}

fn write_group(db: &Db, write_options: &WriteOptions, group: Vec<CommitRequest>) {
    let mut batch = WriteBatch::default();
    let mut accepted = Vec::with_capacity(group.len());

    // A request that names a column family which no longer exists (its tenant was deleted
    // meanwhile) fails alone, so that it does not fail the other requests of the group.
    for request in group {
        match add_to_batch(db, &mut batch, &request.ops) {
            Ok(()) => accepted.push(request.reply),
            Err(err) => {
                let _ = request.reply.send(Err(err));
            }
        }
    }
    if accepted.is_empty() {
        return;
    }

    let result = db.write_opt(batch, write_options);
    if let Err(err) = &result {
        tracing::error!(error = %err, requests = accepted.len(), "group write failed");
    }
    for reply in accepted {
        let outcome = match &result {
            Ok(()) => Ok(()),
            Err(err) => Err(StorageError::rocks("group write", err.clone())),
        };
        // The caller may have gone away (its session closed); the write is kept regardless.
        let _ = reply.send(outcome);
    }
}

fn add_to_batch(db: &Db, batch: &mut WriteBatch, ops: &[Op]) -> Result<()> {
    let mut handles = Vec::with_capacity(ops.len());
    for op in ops {
        let handle = db
            .cf_handle(op.cf())
            .ok_or_else(|| StorageError::TenantNotFound(op.cf().to_owned()))?;
        handles.push(handle);
    }
    for (op, handle) in ops.iter().zip(&handles) {
        match op {
            Op::Put { key, value, .. } => batch.put_cf(handle, key, value),
            Op::Delete { key, .. } => batch.delete_cf(handle, key),
        }
    }
    Ok(())
}
