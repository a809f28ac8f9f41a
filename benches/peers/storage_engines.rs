//! The embedded storage engines for the disk-backed key-value store:
//! redb, fjall and RocksDB measured on what the
//! state machine needs from them. Results and the choice:
//! `docs/storage-engine.md`.
//!
//! Every engine holds the keys in one table (redb table, fjall
//! partition, RocksDB default column family) and the applied index in a
//! second one, written in the same atomic write as the batch it covers.
//! Keys are 16 bytes (a big-endian counter, then 8 bytes of its hash),
//! values `CONCORD_BENCH_VALUE_BYTES` (1024) of incompressible bytes.
//! Each engine runs on its own documented defaults, except where the
//! workload needs a switch (below).
//!
//! Per engine, in this order, each step in a child process of its own
//! (so that its peak memory is its own):
//!
//! 1. **restore**: stream `CONCORD_BENCH_MB` (32) MB of sorted pairs into
//!    an empty engine the engine's bulk way (redb: sorted inserts in
//!    non-durable transactions of 64 MB; fjall: `ingest`; RocksDB: SST
//!    files written by `SstFileWriter` and ingested), then the applied
//!    index and one durable commit. MB/s and peak RSS (`VmHWM`).
//! 2. **open**: reopen after a clean close, read the applied index: time.
//!    Then random gets over the whole key range for `CONCORD_BENCH_SECS`
//!    and the RSS then (the engine's default caches, filled).
//! 3. **apply**: batches of 1, 16 and 256 puts to random existing keys
//!    with the applied index, each `CONCORD_BENCH_SECS` (2) seconds, (a)
//!    durable per batch, (b) non-durable per batch with one durable sync
//!    per second; then `mix`, batches of 256 operations half gets, half
//!    puts, without sync per batch. Puts (or operations) per second, and
//!    the process's CPU time per put (every thread: the engine's
//!    background flushes and compactions count).
//! 4. **scan**: batches of 256 non-durable, one sync per second, for
//!    `CONCORD_BENCH_SECS` alone; then again while another thread opens
//!    a point-in-time view and iterates every pair in key order. The
//!    scan's MB/s, the applier's rate alone and during the scan, and a
//!    check that the view saw neither a later applied index nor a later
//!    key count.
//! 5. **crash**: applies non-durable batches after a durable sync, then
//!    dies by SIGKILL; then **open** again: the time to open after a crash,
//!    and the applied index it recovered (at least the synced one).
//!
//! The open and scan steps first read every file of the engine once
//! (`CONCORD_BENCH_WARM=0` not), so that they measure every engine with
//! its files in the page cache: RocksDB's `SstFileWriter` drops what it
//! wrote from the cache, the others do not.
//!
//! Switches: `CONCORD_BENCH_ROCKSDB_TUNED=1` gives RocksDB the settings
//! of `concord_services::disk_engine` (64 MiB block cache holding index
//! and filter blocks, Bloom filters, files synced as written, at most
//! 128 MiB of log); redb's
//! durable commits use quick-repair (otherwise a crash
//! means walking the whole file on the next open:
//! `CONCORD_BENCH_REDB_QUICK_REPAIR=0` shows that cost); fjall's batches
//! skip the journal's per-batch write to the OS when not durable
//! (`manual_journal_persist`; `CONCORD_BENCH_FJALL_MANUAL_PERSIST=0`
//! for fjall's default), as RocksDB and redb do.
//!
//! ```text
//! cargo bench -p concord-bench --features storage-engines --bench storage_engines
//! CONCORD_BENCH_MB=1024 CONCORD_BENCH_SECS=5 \
//!   cargo bench -p concord-bench --features storage-engines --bench storage_engines
//! ```
//!
//! `CONCORD_BENCH_ENGINES=redb,fjall,rocksdb` chooses engines (rocksdb
//! needs the feature `storage-engines`, the other two
//! `storage-engines-rust`), `CONCORD_BENCH_STEPS` steps (restore first;
//! `restore,open,crash` for restart costs alone), `CONCORD_BENCH_DIR` the
//! parent of the engines' directories (default: the system's temporary
//! directory); each engine's directory is deleted after its run. A step
//! still running after `CONCORD_BENCH_STEP_TIMEOUT_SECS` (600) is killed
//! and reported as `hung_in_step`, and the engine's other steps skipped.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use concord_bench::env::env_u64;

const KEY_BYTES: usize = 16;
const APPLIED_KEY: &[u8] = b"applied_index";
const CHILD_VAR: &str = "CONCORD_BENCH_STORAGE_CHILD";

/// One operation of a batch.
enum Op {
    Put(u64),
    Get(u64),
}

fn key_of(i: u64) -> [u8; KEY_BYTES] {
    let mut k = [0u8; KEY_BYTES];
    k[..8].copy_from_slice(&i.to_be_bytes());
    k[8..].copy_from_slice(&mix64(i).to_be_bytes());
    k
}

fn mix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// A seeded xorshift: the same keys for every engine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Incompressible value bytes: windows into one random buffer.
struct Values {
    pool: Vec<u8>,
    len: usize,
}

impl Values {
    fn new(len: usize) -> Values {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let pool = (0..(1 << 20) + len).map(|_| rng.next() as u8).collect();
        Values { pool, len }
    }

    fn of(&self, i: u64) -> &[u8] {
        let start = (mix64(i ^ 0x5555) as usize) % (self.pool.len() - self.len);
        &self.pool[start..start + self.len]
    }
}

/// What the key-value state machine asks of an engine.
trait Engine: Sync {
    /// Runs `ops` in order and records `applied` in the same atomic
    /// write; durable before returning if `durable`. Returns the gets that
    /// found a value.
    fn apply(&self, ops: &[Op], values: &Values, applied: u64, durable: bool) -> u64;
    /// Makes every earlier apply durable.
    fn sync(&self);
    /// The applied index (latest, not necessarily durable).
    fn applied(&self) -> u64;
    /// Opens a point-in-time view and iterates every pair in key order:
    /// (applied index of the view, pairs, bytes).
    fn scan(&self) -> (u64, u64, u64);
    /// Random point reads.
    fn get(&self, key: &[u8]) -> bool;
}

fn applied_of(bytes: Option<&[u8]>) -> u64 {
    bytes.map_or(0, |b| {
        u64::from_be_bytes(b.try_into().expect("8-byte applied index"))
    })
}

mod redb_engine {
    use super::*;
    use redb::{Database, Durability, ReadableTable, TableDefinition};

    const DATA: TableDefinition<&[u8], &[u8]> = TableDefinition::new("data");
    const META: TableDefinition<&[u8], &[u8]> = TableDefinition::new("meta");

    pub struct Redb {
        db: Database,
        quick_repair: bool,
    }

    fn path(dir: &Path) -> PathBuf {
        dir.join("state.redb")
    }

    pub fn open(dir: &Path) -> Redb {
        std::fs::create_dir_all(dir).unwrap();
        // The v3 file format: the one redb 3 and later read, so that an
        // upgrade past Rust 1.85's redb 2.6 needs no file migration.
        let db = Database::builder()
            .create_with_file_format_v3(env_u64("CONCORD_BENCH_REDB_V3", 1) != 0)
            .create(path(dir))
            .unwrap();
        Redb {
            db,
            quick_repair: env_u64("CONCORD_BENCH_REDB_QUICK_REPAIR", 1) != 0,
        }
    }

    pub fn restore(dir: &Path, pairs: &mut dyn Iterator<Item = (u64, &[u8])>, applied: u64) {
        let engine = open(dir);
        let chunk_bytes = 64 << 20;
        let mut done = false;
        while !done {
            let mut tx = engine.db.begin_write().unwrap();
            tx.set_durability(Durability::None);
            {
                let mut table = tx.open_table(DATA).unwrap();
                let mut bytes = 0;
                done = true;
                for (i, v) in &mut *pairs {
                    table.insert(&key_of(i)[..], v).unwrap();
                    bytes += KEY_BYTES + v.len();
                    if bytes >= chunk_bytes {
                        done = false;
                        break;
                    }
                }
            }
            tx.commit().unwrap();
        }
        let mut tx = engine.db.begin_write().unwrap();
        tx.set_quick_repair(engine.quick_repair);
        {
            let mut meta = tx.open_table(META).unwrap();
            meta.insert(APPLIED_KEY, &applied.to_be_bytes()[..])
                .unwrap();
        }
        tx.commit().unwrap();
    }

    impl Engine for Redb {
        fn apply(&self, ops: &[Op], values: &Values, applied: u64, durable: bool) -> u64 {
            let mut tx = self.db.begin_write().unwrap();
            if durable {
                tx.set_quick_repair(self.quick_repair);
            } else {
                tx.set_durability(Durability::None);
            }
            let mut found = 0;
            {
                let mut table = tx.open_table(DATA).unwrap();
                for op in ops {
                    match *op {
                        Op::Put(i) => {
                            table.insert(&key_of(i)[..], values.of(i)).unwrap();
                        }
                        Op::Get(i) => found += table.get(&key_of(i)[..]).unwrap().is_some() as u64,
                    }
                }
                let mut meta = tx.open_table(META).unwrap();
                meta.insert(APPLIED_KEY, &applied.to_be_bytes()[..])
                    .unwrap();
            }
            tx.commit().unwrap();
            found
        }

        fn sync(&self) {
            // An empty durable commit persists every non-durable one before it.
            let mut tx = self.db.begin_write().unwrap();
            tx.set_quick_repair(self.quick_repair);
            tx.commit().unwrap();
        }

        fn applied(&self) -> u64 {
            let tx = self.db.begin_read().unwrap();
            let meta = tx.open_table(META).unwrap();
            let v = meta.get(APPLIED_KEY).unwrap();
            applied_of(v.as_ref().map(|g| g.value()))
        }

        fn scan(&self) -> (u64, u64, u64) {
            let tx = self.db.begin_read().unwrap();
            let meta = tx.open_table(META).unwrap();
            let applied = applied_of(meta.get(APPLIED_KEY).unwrap().as_ref().map(|g| g.value()));
            let table = tx.open_table(DATA).unwrap();
            let (mut pairs, mut bytes) = (0, 0);
            for item in table.iter().unwrap() {
                let (k, v) = item.unwrap();
                pairs += 1;
                bytes += (k.value().len() + v.value().len()) as u64;
            }
            (applied, pairs, bytes)
        }

        fn get(&self, key: &[u8]) -> bool {
            let tx = self.db.begin_read().unwrap();
            let table = tx.open_table(DATA).unwrap();
            let found = table.get(key).unwrap().is_some();
            // The table borrows the transaction: both end here.
            drop(table);
            found
        }
    }
}

mod fjall_engine {
    use super::*;
    use fjall::{Batch, Config, Keyspace, PartitionCreateOptions, PartitionHandle, PersistMode};

    pub struct Fjall {
        keyspace: Keyspace,
        data: PartitionHandle,
        meta: PartitionHandle,
    }

    pub fn open(dir: &Path) -> Fjall {
        let keyspace = Config::new(dir)
            .manual_journal_persist(true)
            .open()
            .unwrap();
        let data = keyspace
            .open_partition("data", PartitionCreateOptions::default())
            .unwrap();
        let meta = keyspace
            .open_partition("meta", PartitionCreateOptions::default())
            .unwrap();
        Fjall {
            keyspace,
            data,
            meta,
        }
    }

    pub fn restore(dir: &Path, pairs: &mut dyn Iterator<Item = (u64, &[u8])>, applied: u64) {
        let engine = open(dir);
        engine
            .data
            .ingest(pairs.map(|(i, v)| (key_of(i).to_vec(), v.to_vec())))
            .unwrap();
        engine
            .meta
            .insert(APPLIED_KEY, applied.to_be_bytes())
            .unwrap();
        engine.keyspace.persist(PersistMode::SyncAll).unwrap();
    }

    impl Engine for Fjall {
        fn apply(&self, ops: &[Op], values: &Values, applied: u64, durable: bool) -> u64 {
            let mut batch: Batch = self.keyspace.batch();
            if durable {
                batch = batch.durability(Some(PersistMode::SyncAll));
            }
            let mut found = 0;
            for op in ops {
                match *op {
                    Op::Put(i) => batch.insert(&self.data, key_of(i), values.of(i)),
                    Op::Get(i) => found += self.data.get(key_of(i)).unwrap().is_some() as u64,
                }
            }
            batch.insert(&self.meta, APPLIED_KEY, applied.to_be_bytes());
            batch.commit().unwrap();
            found
        }

        fn sync(&self) {
            self.keyspace.persist(PersistMode::SyncAll).unwrap();
        }

        fn applied(&self) -> u64 {
            applied_of(self.meta.get(APPLIED_KEY).unwrap().as_deref())
        }

        fn scan(&self) -> (u64, u64, u64) {
            let instant = self.keyspace.instant();
            let meta = self.meta.snapshot_at(instant);
            let applied = applied_of(meta.get(APPLIED_KEY).unwrap().as_deref());
            let (mut pairs, mut bytes) = (0, 0);
            for item in self.data.snapshot_at(instant).iter() {
                let (k, v) = item.unwrap();
                pairs += 1;
                bytes += (k.len() + v.len()) as u64;
            }
            (applied, pairs, bytes)
        }

        fn get(&self, key: &[u8]) -> bool {
            self.data.get(key).unwrap().is_some()
        }
    }
}

#[cfg(feature = "storage-engines")]
mod rocksdb_engine {
    use super::*;
    use rocksdb::{
        BlockBasedOptions, Cache, IngestExternalFileOptions, IteratorMode, Options, SstFileWriter,
        WriteBatch, WriteOptions, DB,
    };

    pub struct Rocks {
        db: DB,
    }

    fn options() -> Options {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        if env_u64("CONCORD_BENCH_ROCKSDB_TUNED", 0) != 0 {
            // The settings of `concord_services::disk_engine`.
            let mut table = BlockBasedOptions::default();
            table.set_block_cache(&Cache::new_lru_cache(64 << 20));
            table.set_cache_index_and_filter_blocks(true);
            table.set_pin_l0_filter_and_index_blocks_in_cache(true);
            table.set_bloom_filter(10.0, false);
            opts.set_block_based_table_factory(&table);
            opts.set_bytes_per_sync(1 << 20);
            opts.set_wal_bytes_per_sync(1 << 20);
            opts.set_max_total_wal_size(128 << 20);
        }
        opts
    }

    pub fn open(dir: &Path) -> Rocks {
        let db = DB::open_cf(&options(), dir, ["meta"]).unwrap();
        Rocks { db }
    }

    pub fn restore(dir: &Path, pairs: &mut dyn Iterator<Item = (u64, &[u8])>, applied: u64) {
        let engine = open(dir);
        let opts = options();
        let sst_dir = dir.join("restore-sst");
        std::fs::create_dir_all(&sst_dir).unwrap();
        let mut files = Vec::new();
        let mut done = false;
        while !done {
            let writer = SstFileWriter::create(&opts);
            let file = sst_dir.join(format!("{:06}.sst", files.len()));
            writer.open(&file).unwrap();
            let mut writer = writer;
            done = true;
            let mut any = false;
            for (i, v) in &mut *pairs {
                writer.put(key_of(i), v).unwrap();
                any = true;
                if writer.file_size() >= 256 << 20 {
                    done = false;
                    break;
                }
            }
            if any {
                writer.finish().unwrap();
                files.push(file);
            }
        }
        let mut ingest = IngestExternalFileOptions::default();
        ingest.set_move_files(true);
        engine.db.ingest_external_file_opts(&ingest, files).unwrap();
        let meta = engine.db.cf_handle("meta").unwrap();
        let mut batch = WriteBatch::default();
        batch.put_cf(meta, APPLIED_KEY, applied.to_be_bytes());
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        engine.db.write_opt(batch, &wo).unwrap();
        std::fs::remove_dir_all(&sst_dir).unwrap();
    }

    impl Engine for Rocks {
        fn apply(&self, ops: &[Op], values: &Values, applied: u64, durable: bool) -> u64 {
            let mut batch = WriteBatch::default();
            let mut found = 0;
            for op in ops {
                match *op {
                    Op::Put(i) => batch.put(key_of(i), values.of(i)),
                    Op::Get(i) => found += self.db.get_pinned(key_of(i)).unwrap().is_some() as u64,
                }
            }
            let meta = self.db.cf_handle("meta").unwrap();
            batch.put_cf(meta, APPLIED_KEY, applied.to_be_bytes());
            let mut wo = WriteOptions::default();
            wo.set_sync(durable);
            self.db.write_opt(batch, &wo).unwrap();
            found
        }

        fn sync(&self) {
            self.db.flush_wal(true).unwrap();
        }

        fn applied(&self) -> u64 {
            let meta = self.db.cf_handle("meta").unwrap();
            applied_of(self.db.get_pinned_cf(meta, APPLIED_KEY).unwrap().as_deref())
        }

        fn scan(&self) -> (u64, u64, u64) {
            let snapshot = self.db.snapshot();
            let meta = self.db.cf_handle("meta").unwrap();
            let applied = applied_of(snapshot.get_cf(meta, APPLIED_KEY).unwrap().as_deref());
            let (mut pairs, mut bytes) = (0, 0);
            for item in snapshot.iterator(IteratorMode::Start) {
                let (k, v) = item.unwrap();
                pairs += 1;
                bytes += (k.len() + v.len()) as u64;
            }
            (applied, pairs, bytes)
        }

        fn get(&self, key: &[u8]) -> bool {
            self.db.get_pinned(key).unwrap().is_some()
        }
    }
}

fn open_engine(name: &str, dir: &Path) -> Box<dyn Engine> {
    match name {
        "redb" => Box::new(redb_engine::open(dir)),
        "fjall" => Box::new(fjall_engine::open(dir)),
        #[cfg(feature = "storage-engines")]
        "rocksdb" => Box::new(rocksdb_engine::open(dir)),
        other => panic!(
            "unknown engine {other:?} (redb, fjall, and rocksdb with the feature storage-engines)"
        ),
    }
}

/// `VmRSS` and `VmHWM` of this process, in MiB.
fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU seconds of this process so far, every thread (the engines'
/// background flushes and compactions too): `utime + stime` of
/// `/proc/self/stat`, in clock ticks of 10 ms.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat(5); 11 and 12 here.
    (ticks(11) + ticks(12)) / 100.0
}

/// Reads every file under `dir` once, so that the engine's files are in
/// the operating system's page cache before a step reads them: what
/// each engine wrote is cached or not by its own choice (RocksDB's
/// `SstFileWriter` drops what it wrote from the cache), and a step that
/// reads would measure the disk for one engine and memory for another.
fn warm(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                warm(&path);
            } else if let Ok(mut file) = std::fs::File::open(&path) {
                let _ = std::io::copy(&mut file, &mut std::io::sink());
            }
        }
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let meta = entry.metadata().unwrap();
            total += if meta.is_dir() {
                dir_bytes(&entry.path())
            } else {
                meta.len()
            };
        }
    }
    total
}

struct Sizes {
    keys: u64,
    value_bytes: usize,
    secs: u64,
}

impl Sizes {
    fn from_env() -> Sizes {
        let value_bytes = env_u64("CONCORD_BENCH_VALUE_BYTES", 1024) as usize;
        let mb = env_u64("CONCORD_BENCH_MB", 32);
        Sizes {
            keys: (mb << 20) / (KEY_BYTES + value_bytes) as u64,
            value_bytes,
            secs: env_u64("CONCORD_BENCH_SECS", 2),
        }
    }
}

/// The applied index the restore records: the keys were "applied" once each.
fn restored_index(sizes: &Sizes) -> u64 {
    sizes.keys
}

/// What one apply cell runs.
#[derive(Clone, Copy)]
struct Load {
    /// Operations per batch.
    batch: usize,
    /// Durable per batch; otherwise one durable sync a second.
    durable: bool,
    /// Half of the operations gets.
    gets: bool,
    /// The key sequence.
    seed: u64,
}

/// Applies batches until `until` says so: ops per second.
fn apply_loop(
    engine: &dyn Engine,
    values: &Values,
    sizes: &Sizes,
    next_index: &AtomicU64,
    load: Load,
    until: &dyn Fn(Duration) -> bool,
) -> f64 {
    let Load {
        batch,
        durable,
        gets,
        seed,
    } = load;
    let mut rng = Rng(seed | 1);
    let mut ops = Vec::with_capacity(batch);
    let start = Instant::now();
    let mut last_sync = start;
    let mut count = 0u64;
    while !until(start.elapsed()) {
        ops.clear();
        for n in 0..batch {
            let i = rng.next() % sizes.keys;
            ops.push(if gets && n % 2 == 0 {
                Op::Get(i)
            } else {
                Op::Put(i)
            });
        }
        let index = next_index.fetch_add(1, Ordering::Relaxed);
        let found = engine.apply(&ops, values, index, durable);
        if gets {
            assert!(
                found > 0 || batch < 16,
                "gets of existing keys found nothing"
            );
        }
        count += batch as u64;
        if !durable && last_sync.elapsed() >= Duration::from_secs(1) {
            engine.sync();
            last_sync = Instant::now();
        }
    }
    if !durable {
        engine.sync();
    }
    count as f64 / start.elapsed().as_secs_f64()
}

/// One step in this (child) process; prints `key=value` lines.
fn child(step: &str, name: &str, dir: &Path) {
    let sizes = Sizes::from_env();
    let values = Values::new(sizes.value_bytes);
    let out = |k: &str, v: String| println!("{k}={v}");
    match step {
        "restore" => {
            let start = Instant::now();
            let value_bytes = sizes.value_bytes;
            let mut pairs = (0..sizes.keys).map(|i| (i, values.of(i)));
            let applied = restored_index(&sizes);
            match name {
                "redb" => redb_engine::restore(dir, &mut pairs, applied),
                "fjall" => fjall_engine::restore(dir, &mut pairs, applied),
                #[cfg(feature = "storage-engines")]
                "rocksdb" => rocksdb_engine::restore(dir, &mut pairs, applied),
                other => panic!("unknown engine {other:?}"),
            }
            let secs = start.elapsed().as_secs_f64();
            let mb = (sizes.keys * (KEY_BYTES + value_bytes) as u64) as f64 / (1 << 20) as f64;
            out("restore_secs", format!("{secs:.2}"));
            out("restore_mb_s", format!("{:.0}", mb / secs));
            out("restore_hwm_mib", format!("{:.0}", rss_mib().1));
            out(
                "disk_mib",
                format!("{:.0}", dir_bytes(dir) as f64 / (1 << 20) as f64),
            );
        }
        "open" => {
            if env_u64("CONCORD_BENCH_WARM", 1) != 0 {
                warm(dir);
            }
            let start = Instant::now();
            let engine = open_engine(name, dir);
            let applied = engine.applied();
            out(
                "open_ms",
                format!("{:.1}", start.elapsed().as_secs_f64() * 1e3),
            );
            out("open_applied", applied.to_string());
            out("open_rss_mib", format!("{:.0}", rss_mib().0));
            // Memory with the caches filled: random reads over every key.
            let mut rng = Rng(7);
            let start = Instant::now();
            let mut reads = 0u64;
            while start.elapsed() < Duration::from_secs(sizes.secs) {
                for _ in 0..1000 {
                    let found = engine.get(&key_of(rng.next() % sizes.keys));
                    assert!(found, "a restored key is missing");
                }
                reads += 1000;
            }
            out(
                "gets_s",
                format!("{:.0}", reads as f64 / start.elapsed().as_secs_f64()),
            );
            let (rss, hwm) = rss_mib();
            out("read_rss_mib", format!("{rss:.0}"));
            out("read_hwm_mib", format!("{hwm:.0}"));
        }
        "apply" => {
            let engine = open_engine(name, dir);
            let next = AtomicU64::new(engine.applied() + 1);
            let secs = Duration::from_secs(sizes.secs);
            for durable in [true, false] {
                for batch in [1, 16, 256] {
                    let (cpu, wall) = (cpu_secs(), Instant::now());
                    let rate = apply_loop(
                        &*engine,
                        &values,
                        &sizes,
                        &next,
                        Load {
                            batch,
                            durable,
                            gets: false,
                            seed: batch as u64,
                        },
                        &|t| t >= secs,
                    );
                    let mode = if durable { "sync" } else { "nosync" };
                    out(&format!("apply_{mode}_{batch}"), format!("{rate:.0}"));
                    let ops = rate * wall.elapsed().as_secs_f64();
                    let us = (cpu_secs() - cpu) * 1e6 / ops;
                    out(&format!("apply_{mode}_{batch}_cpu_us"), format!("{us:.1}"));
                }
            }
            let (cpu, wall) = (cpu_secs(), Instant::now());
            let rate = apply_loop(
                &*engine,
                &values,
                &sizes,
                &next,
                Load {
                    batch: 256,
                    durable: false,
                    gets: true,
                    seed: 99,
                },
                &|t| t >= secs,
            );
            out("apply_mix_256", format!("{rate:.0}"));
            let ops = rate * wall.elapsed().as_secs_f64();
            out(
                "apply_mix_256_cpu_us",
                format!("{:.1}", (cpu_secs() - cpu) * 1e6 / ops),
            );
            let expect = next.load(Ordering::Relaxed) - 1;
            assert_eq!(engine.applied(), expect, "applied index after the batches");
            out("apply_hwm_mib", format!("{:.0}", rss_mib().1));
            out(
                "disk_after_apply_mib",
                format!("{:.0}", dir_bytes(dir) as f64 / (1 << 20) as f64),
            );
        }
        "scan" => {
            if env_u64("CONCORD_BENCH_WARM", 1) != 0 {
                warm(dir);
            }
            let engine = open_engine(name, dir);
            let next = AtomicU64::new(engine.applied() + 1);
            let secs = Duration::from_secs(sizes.secs);
            let alone = apply_loop(
                &*engine,
                &values,
                &sizes,
                &next,
                Load {
                    batch: 256,
                    durable: false,
                    gets: false,
                    seed: 5,
                },
                &|t| t >= secs,
            );
            out("scan_apply_alone", format!("{alone:.0}"));
            // Scan with no applier, for the scan's own speed.
            let start = Instant::now();
            let (_, _, bytes) = engine.scan();
            let quiet = bytes as f64 / (1 << 20) as f64 / start.elapsed().as_secs_f64();
            out("scan_quiet_mb_s", format!("{quiet:.0}"));
            let done = AtomicBool::new(false);
            let engine = &*engine;
            let (during, (view_applied, pairs, bytes, scan_secs, after_applied)) =
                std::thread::scope(|s| {
                    let applier = s.spawn(|| {
                        apply_loop(
                            engine,
                            &values,
                            &sizes,
                            &next,
                            Load {
                                batch: 256,
                                durable: false,
                                gets: false,
                                seed: 6,
                            },
                            &|_| done.load(Ordering::Relaxed),
                        )
                    });
                    // Let the applier run before the view is taken.
                    std::thread::sleep(Duration::from_millis(200));
                    let start = Instant::now();
                    let (view_applied, pairs, bytes) = engine.scan();
                    let scan_secs = start.elapsed().as_secs_f64();
                    let after_applied = engine.applied();
                    done.store(true, Ordering::Relaxed);
                    (
                        applier.join().unwrap(),
                        (view_applied, pairs, bytes, scan_secs, after_applied),
                    )
                });
            // Puts go to existing keys only, so every view holds every key.
            assert_eq!(pairs, sizes.keys, "the view's key count");
            assert!(
                view_applied < after_applied,
                "the applier made no progress during the scan"
            );
            out(
                "scan_mb_s",
                format!("{:.0}", bytes as f64 / (1 << 20) as f64 / scan_secs),
            );
            out("scan_secs", format!("{scan_secs:.2}"));
            out("scan_apply_during", format!("{during:.0}"));
            out("scan_hwm_mib", format!("{:.0}", rss_mib().1));
        }
        "crash" => {
            let engine = open_engine(name, dir);
            let next = AtomicU64::new(engine.applied() + 1);
            let mut rng = Rng(11);
            let mut ops = Vec::new();
            engine.sync();
            let synced = next.load(Ordering::Relaxed) - 1;
            // Two seconds of non-durable batches after the last sync.
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(2) {
                ops.clear();
                ops.extend((0..256).map(|_| Op::Put(rng.next() % sizes.keys)));
                let index = next.fetch_add(1, Ordering::Relaxed);
                engine.apply(&ops, &values, index, false);
            }
            out("crash_synced", synced.to_string());
            out(
                "crash_applied",
                (next.load(Ordering::Relaxed) - 1).to_string(),
            );
            std::io::stdout().flush().unwrap();
            // SIGKILL, as a crashed server dies: no destructor, no core file.
            let pid = std::process::id().to_string();
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid])
                .status();
            unreachable!("still alive after SIGKILL");
        }
        other => panic!("unknown step {other:?}"),
    }
}

/// Runs one step in a child process: its `key=value` lines, or `None`
/// if it did not finish within `CONCORD_BENCH_STEP_TIMEOUT_SECS` (600):
/// then it is killed.
fn run_child(step: &str, name: &str, dir: &Path) -> Option<Vec<(String, String)>> {
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .env(CHILD_VAR, format!("{step}:{name}:{}", dir.display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    // The child prints a few short lines: the pipe never fills.
    let timeout = Duration::from_secs(env_u64("CONCORD_BENCH_STEP_TIMEOUT_SECS", 600));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > timeout {
            eprintln!("{name}: step {step} still running after {timeout:?}: killed");
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().unwrap();
    let ok = status.success() || step == "crash";
    assert!(ok, "step {step} of {name} failed: {status}");
    Some(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_VAR) {
        let mut parts = spec.splitn(3, ':');
        let (step, name, dir) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        child(step, name, Path::new(dir));
        return;
    }
    let all = if cfg!(feature = "storage-engines") {
        "redb,fjall,rocksdb"
    } else {
        "redb,fjall"
    };
    let engines = std::env::var("CONCORD_BENCH_ENGINES").unwrap_or_else(|_| all.to_string());
    let parent = std::env::var("CONCORD_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let steps: Vec<String> = std::env::var("CONCORD_BENCH_STEPS")
        .unwrap_or_else(|_| "restore,open,apply,scan,crash".to_string())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(
        steps.first().map(String::as_str),
        Some("restore"),
        "the first step is restore"
    );
    let sizes = Sizes::from_env();
    println!(
        "storage engines: {} keys of {} B + {} B values ({} MiB), {} s per cell",
        sizes.keys,
        KEY_BYTES,
        sizes.value_bytes,
        (sizes.keys * (KEY_BYTES + sizes.value_bytes) as u64) >> 20,
        sizes.secs
    );
    let mut table: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for name in engines.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let dir = parent.join(format!(
            "concord-storage-bench-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let mut results = Vec::new();
        let mut hung = false;
        for step in &steps {
            eprintln!("{name}: {step}");
            let Some(lines) = run_child(step, name, &dir) else {
                results.push(("hung_in_step".to_string(), step.to_string()));
                hung = true;
                break;
            };
            if *step == "crash" {
                // Open again after the crash.
                let Some(reopened) = run_child("open", name, &dir) else {
                    results.push(("hung_in_step".to_string(), "open after crash".to_string()));
                    hung = true;
                    break;
                };
                results.extend(lines);
                for (k, v) in reopened {
                    match k.as_str() {
                        "open_ms" => results.push(("crash_open_ms".into(), v)),
                        "open_applied" => results.push(("crash_recovered".into(), v)),
                        _ => {}
                    }
                }
            } else {
                results.extend(lines);
            }
        }
        let get = |k: &str| results.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        if let (Some(synced), Some(recovered)) = (get("crash_synced"), get("crash_recovered")) {
            let (synced, recovered): (u64, u64) =
                (synced.parse().unwrap(), recovered.parse().unwrap());
            assert!(
                recovered >= synced,
                "{name} lost synced applies: {recovered} < {synced}"
            );
        }
        if !hung || env_u64("CONCORD_BENCH_KEEP_HUNG", 0) == 0 {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        table.push((name.to_string(), results));
    }
    print_table(&table);
}

fn print_table(table: &[(String, Vec<(String, String)>)]) {
    let mut keys: Vec<String> = Vec::new();
    for (_, results) in table {
        for (k, _) in results {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    print!("| measure |");
    for (name, _) in table {
        print!(" {name} |");
    }
    println!();
    print!("| --- |");
    for _ in table {
        print!(" ---: |");
    }
    println!();
    for key in &keys {
        print!("| {key} |");
        for (_, results) in table {
            let v = results
                .iter()
                .find(|(k, _)| k == key)
                .map_or("-", |(_, v)| v.as_str());
            print!(" {v} |");
        }
        println!();
    }
}
