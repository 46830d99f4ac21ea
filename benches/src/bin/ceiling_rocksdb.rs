//! `ceiling-rocksdb`: RocksDB's own write rate on this machine, the storage ceiling that
//! bulkhead's persisted sends are compared with.
//!
//! Each of `--threads` threads writes `--batch-values` values of `--value-bytes` bytes per
//! `WriteBatch`, with `WriteOptions::set_sync(true)` unless `--no-sync`, until
//! `--duration-secs` or `--max-values` ends the run. The writer does no batching of its own
//! across threads: RocksDB's write path already merges the batches of concurrent writers into
//! one WAL write and one sync (its write group), which is what bulkhead's commit thread does
//! one level higher. It prints one JSON object with the rate and the write latencies.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use rocksdb::{DBCompressionType, Options, WriteBatch, WriteOptions, DB};
use serde::Serialize;

#[derive(Parser)]
#[command(name = "ceiling-rocksdb", about = "Measure RocksDB's synced write rate with a minimal writer")]
struct Args {
    /// Writer threads.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=4096))]
    threads: u32,

    /// Values per write batch (and so per sync) of one thread.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch_values: u32,

    /// Size of each value in bytes.
    #[arg(long, default_value_t = 256)]
    value_bytes: usize,

    /// Write without syncing the WAL (the `wal` durability of bulkhead).
    #[arg(long)]
    no_sync: bool,

    /// Time limit of the run, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration_secs: u64,

    /// Values after which the run stops, across all threads.
    #[arg(long, default_value_t = 10_000_000)]
    max_values: u64,

    /// Directory for the database; a temporary directory when left out. It must not exist
    /// yet or be empty.
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Serialize)]
struct Outcome {
    threads: u32,
    batch_values: u32,
    value_bytes: usize,
    sync: bool,
    writes: u64,
    values: u64,
    seconds: f64,
    values_per_sec: f64,
    /// Latency of one write call (one batch), in microseconds.
    write_p50_us: u64,
    write_p99_us: u64,
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let temp = tempfile::Builder::new()
        .prefix("ceiling-rocksdb-")
        .tempdir()
        .map_err(|e| format!("failed to create a temporary directory: {e}"))?;
    let path = args.dir.clone().unwrap_or_else(|| temp.path().to_path_buf());

    let mut options = Options::default();
    options.create_if_missing(true);
    options.set_compression_type(DBCompressionType::Lz4);
    let db = Arc::new(DB::open(&options, &path).map_err(|e| format!("failed to open {}: {e}", path.display()))?);

    let stop = Arc::new(AtomicBool::new(false));
    let values_written = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration_secs);

    let writers: Vec<_> = (0..args.threads)
        .map(|thread| {
            let writer = Writer {
                db: db.clone(),
                thread,
                batch_values: args.batch_values,
                value: vec![b'x'; args.value_bytes],
                sync: !args.no_sync,
                stop: stop.clone(),
                values_written: values_written.clone(),
                max_values: args.max_values,
                deadline,
            };
            std::thread::spawn(move || writer.run())
        })
        .collect();

    let mut latencies = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let mut writes = 0;
    for handle in writers {
        let histogram = handle.join().map_err(|_| "a writer thread panicked".to_string())??;
        writes += histogram.len();
        latencies.add(&histogram).expect("histograms with the same bounds");
    }
    let seconds = started.elapsed().as_secs_f64();
    let values = values_written.load(Ordering::Relaxed);

    let outcome = Outcome {
        threads: args.threads,
        batch_values: args.batch_values,
        value_bytes: args.value_bytes,
        sync: !args.no_sync,
        writes,
        values,
        seconds,
        values_per_sec: values as f64 / seconds,
        write_p50_us: latencies.value_at_quantile(0.5),
        write_p99_us: latencies.value_at_quantile(0.99),
    };
    println!("{}", serde_json::to_string(&outcome).expect("the outcome serializes"));

    drop(db);
    Ok(())
}

struct Writer {
    db: Arc<DB>,
    thread: u32,
    batch_values: u32,
    value: Vec<u8>,
    sync: bool,
    stop: Arc<AtomicBool>,
    values_written: Arc<AtomicU64>,
    max_values: u64,
    deadline: Instant,
}

impl Writer {
    /// Writes batches until the deadline or the value limit; returns the write latencies in
    /// microseconds.
    fn run(self) -> Result<Histogram<u64>, String> {
        let mut latencies = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
        let mut write_options = WriteOptions::default();
        write_options.set_sync(self.sync);
        let mut seq: u64 = 0;

        while !self.stop.load(Ordering::Relaxed) && Instant::now() < self.deadline {
            let mut batch = WriteBatch::default();
            for _ in 0..self.batch_values {
                seq += 1;
                // Keys like bulkhead's message keys: one conversation per thread, then the seq.
                let mut key = format!("c{:05}/", self.thread).into_bytes();
                key.extend_from_slice(&seq.to_be_bytes());
                batch.put(&key, &self.value);
            }

            let start = Instant::now();
            self.db
                .write_opt(batch, &write_options)
                .map_err(|e| format!("write failed in thread {}: {e}", self.thread))?;
            latencies.saturating_record(start.elapsed().as_micros() as u64);

            let total = self.values_written.fetch_add(self.batch_values as u64, Ordering::Relaxed)
                + self.batch_values as u64;
            if total >= self.max_values {
                self.stop.store(true, Ordering::Relaxed);
            }
        }
        Ok(latencies)
    }
}
