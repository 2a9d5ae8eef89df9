//! Model scores per image, kept on disk so reopening a scanned folder is instant.
//!
//! ## Key and location
//! One file per (model, dataset root): `scan-<model>-<root>.bin`, named by hashes of the
//! model file's bytes and of the root's canonical path, in the user cache directory
//! ([`default_dir`]: `$CAMSCOPE_CACHE_DIR`, else `$XDG_CACHE_HOME/camscope`, else
//! `~/.cache/camscope`), never inside the dataset: a cache directory under the root is
//! refused ([`CacheError::InsideDataset`]) unless a hidden folder lies between them, as when
//! the dataset is the home folder and the cache `~/.cache/camscope` (the scan never enters
//! hidden folders, so the cache can neither show up as data nor change it). Within it, an entry is keyed by the image's
//! path relative to the root, and used only while the file's size and modification time are
//! unchanged (an edit within the same timestamp tick that keeps the size is not seen, as with
//! `make` or `rsync`). Deleting the directory is always safe: it is rebuilt by scanning again.
//!
//! The model hash is SHA-256 of the whole file: about 25 ms for the bundled 18.6 MB model on a
//! CPU with SHA extensions (once per model open), and it catches a re-exported model with the
//! same name, which a size/mtime key would only catch by luck.
//!
//! ## What an entry holds, and why
//! Triage needs, per image, the top classes (top-1 and top-5 accuracy, margin) and p(true)
//! for whatever the truth is: truth comes from folder names or a CSV that the user may fix
//! and reload, so it is not part of the key and any class must be answerable without running
//! the model again. So an entry keeps the [`STORED_TOP_K`] best classes and the whole
//! distribution, as the f32 values the model gave: a cached result equals a fresh one to the
//! bit (version 1 quantised −ln p to 1/256 nat, and a reopened folder showed a loss of 7.7461
//! where the fresh scan said 7.7445). 1000 classes make ~4.1 KB per image on disk, ~4.1 GB
//! for a million images.
//!
//! ## Why an append-only log (version 3)
//! Version 2 was one checksummed blob, read into a map of every entry's scores and rewritten
//! whole on each save: 4 KB of memory per image (4 GB at a million) and a save that grew with
//! the dataset, so a long scan spent ever more of its time rewriting what had not changed.
//! Version 3 is a log: a save appends only the records made since the last one, and memory
//! holds an index (a 128-bit hash of the path → the record's offset and the file's stamp,
//! ~60 bytes an image); a lookup reads the top-k and the one probability it needs from the
//! file. Each record carries its own CRC-32 (not SHA-256: it guards against torn writes and
//! bit rot, not an adversary, and runs at memory speed), so damage costs only what follows it:
//! a torn tail (a killed scan, a full disk) is cut off at the last whole record and the rest
//! is kept, where version 2 threw the whole file away.
//!
//! ## Format (little-endian), version [`FORMAT_VERSION`]
//! Header: `magic "CAMSCAN\0"`, `version u32`, `model hash [32]`, `classes u32`, `top-k u32`,
//! `root length u32`, `root bytes`, `CRC-32 u32` of the header before it. Then records, each
//! `length u32` (of the body), body, `CRC-32 u32` of the length and body. A body is `kind u8`,
//! `path length u32`, `path bytes` (relative to the root), and for kind 1 (scores) `size u64`,
//! `mtime seconds i64`, `mtime nanoseconds u32`, `top-k × (class u32, p f32)` (classes past the
//! model's padded with class `u32::MAX`), `classes × f32`; kind 0 removes the path. A later
//! record for a path replaces an earlier one.
//!
//! A file whose header is not this version's, for this model, class count and root (or fails
//! its CRC) is discarded whole ([`LoadOutcome::Discarded`]) and replaced on the next save. A
//! record that is short, fails its CRC or does not parse to the byte ends the log: it and
//! everything after it are cut off ([`LoadOutcome::Recovered`]); what comes before is trusted.
//! When superseded records make up more than half of a file over [`COMPACT_MIN_BYTES`], opening
//! rewrites the live records into a fresh file (temporary name, renamed over).
//!
//! ## Several processes
//! Shards of one triage on one machine share a cache file. Opening, appending and compacting
//! each hold an exclusive `flock` on it, so records never interleave and nothing reads a record
//! being written; an append goes at the file's current end, wherever other processes left it.
//! A process whose file was replaced by another's compaction sees that (the path's inode
//! changed) at its next save, reloads the index from the new file and appends there. Records
//! appended by another process after this one opened are not seen until the next open.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::stats::{ClassProb, ImageResult, top_k};
use super::truth::fold_absolute;

/// Version of the file layout; any other is discarded.
pub const FORMAT_VERSION: u32 = 3;
const MAGIC: &[u8; 8] = b"CAMSCAN\0";
/// Classes kept exactly (f32) per image: enough for top-5 accuracy and the top-5 list.
pub const STORED_TOP_K: usize = 5;
/// Files smaller than this are never compacted: rewriting them would save next to nothing.
pub const COMPACT_MIN_BYTES: u64 = 1 << 20;
/// Records waiting in memory for a save are appended once they reach this size, whatever the
/// caller's save interval, so memory stays bounded (16 MB: ~4,000 images of 1000 classes).
const PENDING_FLUSH_BYTES: usize = 16 << 20;
/// Longest path a record may hold: a corrupt length cannot ask for gigabytes.
const MAX_PATH: usize = 64 << 10;
const KIND_REMOVED: u8 = 0;
const KIND_SCORES: u8 = 1;
/// Marks a [`Slot`] offset as one into the pending buffer rather than the file.
const PENDING: u64 = 1 << 63;
/// Bytes of a record before its path: length, kind, path length.
const RECORD_HEAD: usize = 4 + 1 + 4;
/// The stamp's bytes in a scores record.
const STAMP_BYTES: usize = 8 + 8 + 4;

/// Why the cache cannot be used. A bad cache *file* is never an error: it is discarded.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{}: cannot read the model to hash it: {source}; check the model path", path.display())]
    ModelRead { path: PathBuf, source: std::io::Error },
    #[error("no cache directory: HOME is not set; set CAMSCOPE_CACHE_DIR to a writable folder")]
    NoDirectory,
    #[error("{}: the cache directory is inside the dataset {}; set CAMSCOPE_CACHE_DIR to a folder outside it", dir.display(), root.display())]
    InsideDataset { dir: PathBuf, root: PathBuf },
    #[error("{}: cannot write the scan cache: {source}; check space and permissions, or set CAMSCOPE_CACHE_DIR (the cache is optional and safe to delete)", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

/// The user cache directory for camscope, from the environment (see [`dir_from_env`]).
pub fn default_dir() -> Result<PathBuf, CacheError> {
    dir_from_env(|name| std::env::var_os(name))
}

/// `$CAMSCOPE_CACHE_DIR` if set and non-empty, else `$XDG_CACHE_HOME/camscope` if that is an
/// absolute path (the XDG spec says to ignore relative ones), else `$HOME/.cache/camscope`.
pub fn dir_from_env(var: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf, CacheError> {
    let set = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set("CAMSCOPE_CACHE_DIR") {
        return Ok(dir);
    }
    if let Some(xdg) = set("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return Ok(xdg.join("camscope"));
    }
    set("HOME").map(|home| home.join(".cache").join("camscope")).ok_or(CacheError::NoDirectory)
}

/// SHA-256 of a model file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModelHash(pub [u8; 32]);

impl ModelHash {
    /// Hash a model file, streaming (the file is not held in memory).
    ///
    /// Remembered per process by path, size and modification time: a triage run needs the hash
    /// for the scan cache's key and again for triage.json (a second second on a 330 MB model).
    pub fn of_file(path: &Path) -> Result<Self, CacheError> {
        type Seen = std::collections::HashMap<(PathBuf, u64, Option<std::time::SystemTime>), [u8; 32]>;
        static SEEN: std::sync::Mutex<Option<Seen>> = std::sync::Mutex::new(None);
        let err = |source| CacheError::ModelRead { path: path.to_owned(), source };
        let mut file = std::fs::File::open(path).map_err(err)?;
        let meta = file.metadata().map_err(err)?;
        let key = (path.to_owned(), meta.len(), meta.modified().ok());
        if let Some(hash) = SEEN.lock().unwrap_or_else(|e| e.into_inner()).as_ref().and_then(|m| m.get(&key)) {
            return Ok(Self(*hash));
        }
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).map_err(err)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let hash: [u8; 32] = hasher.finalize().into();
        SEEN.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(Default::default).insert(key, hash);
        Ok(Self(hash))
    }

    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Lower-case hex of the first `n` bytes.
    pub fn hex(&self, n: usize) -> String {
        hex(&self.0[..n.min(32)])
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The identity of an image file's contents as far as the cache can tell cheaply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub size: u64,
    /// Modification time as seconds and nanoseconds since the Unix epoch (negative before it).
    pub mtime_secs: i64,
    pub mtime_nanos: u32,
}

impl FileStamp {
    pub fn new(size: u64, mtime: SystemTime) -> Self {
        let (mtime_secs, mtime_nanos) = match mtime.duration_since(UNIX_EPOCH) {
            Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
            Err(e) => {
                let d = e.duration();
                let (s, n) = (d.as_secs() as i64, d.subsec_nanos());
                if n == 0 { (-s, 0) } else { (-s - 1, 1_000_000_000 - n) }
            }
        };
        Self { size, mtime_secs, mtime_nanos }
    }

    /// The stamp of a file's metadata (`None` where the platform has no modification time).
    pub fn of(meta: &std::fs::Metadata) -> Option<Self> {
        meta.modified().ok().map(|m| Self::new(meta.len(), m))
    }

    /// Stat `path` and stamp it.
    pub fn read(path: &Path) -> std::io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        Self::of(&meta).ok_or_else(|| std::io::Error::other("no modification time on this platform"))
    }

    /// The modification time back as a `SystemTime`.
    pub fn mtime(&self) -> SystemTime {
        let nanos = Duration::new(0, self.mtime_nanos);
        if self.mtime_secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(self.mtime_secs as u64) + nanos
        } else {
            UNIX_EPOCH - Duration::from_secs(self.mtime_secs.unsigned_abs()) + nanos
        }
    }
}

/// One image's scores as the cache keeps them (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct CachedScores {
    top: Vec<ClassProb>,
    probabilities: Box<[f32]>,
}

impl CachedScores {
    /// From the model's full probability vector for the image.
    pub fn from_probabilities(probabilities: &[f32]) -> Self {
        Self { top: top_k(probabilities, STORED_TOP_K), probabilities: probabilities.into() }
    }

    /// The best classes, exact, most probable first.
    pub fn top(&self) -> &[ClassProb] {
        &self.top
    }

    pub fn num_classes(&self) -> usize {
        self.probabilities.len()
    }

    /// Probability of `class`, exactly as the model gave it; 0 out of range.
    pub fn probability(&self, class: usize) -> f32 {
        self.probabilities.get(class).copied().unwrap_or(0.0)
    }

    /// The triage record for this image with truth `truth`.
    pub fn result(&self, path: PathBuf, truth: Option<usize>) -> ImageResult {
        ImageResult { path, truth, top: self.top.clone(), p_truth: truth.map(|t| self.probability(t)) }
    }
}

/// What [`ScanCache::open`] found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadOutcome {
    /// No cache file yet.
    Missing,
    Loaded {
        entries: usize,
    },
    /// The file ended in a torn or damaged record (an interrupted save, a full disk): the
    /// `entries` before it are used, its `ignored_bytes` were cut off.
    Recovered {
        entries: usize,
        ignored_bytes: u64,
    },
    /// A file was there but not usable; it will be replaced on the next save.
    Discarded {
        reason: String,
    },
}

/// Where one image's latest record is, and the stamp it was made for: 32 bytes, 48 with its
/// key. The stamp's fields are inline because a [`FileStamp`] field pads the slot to 40 bytes
/// and an index entry (aligned as its `u128` key) to 64: 2^21 buckets x 16 bytes = 34 MB more
/// at a million images.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Slot {
    /// Offset of the record in the file, or [`PENDING`] | offset in the pending buffer.
    offset: u64,
    size: u64,
    mtime_secs: i64,
    mtime_nanos: u32,
    path_len: u32,
}

impl Slot {
    fn new(offset: u64, stamp: FileStamp, path_len: u32) -> Self {
        let FileStamp { size, mtime_secs, mtime_nanos } = stamp;
        Self { offset, size, mtime_secs, mtime_nanos, path_len }
    }

    fn stamp(&self) -> FileStamp {
        FileStamp { size: self.size, mtime_secs: self.mtime_secs, mtime_nanos: self.mtime_nanos }
    }
}

const _: () = assert!(std::mem::size_of::<(u128, Slot)>() == 48, "an index entry grew; see Slot");

/// A change not yet appended to the file, replayed on the index if the file had to be reloaded.
#[derive(Debug, Clone, Copy)]
enum Op {
    Put(u128, Slot),
    Remove(u128),
}

/// The cached scores of one model over one dataset root. Owned by the scanning worker:
/// [`lookup_result`](Self::lookup_result) before running an image, [`insert`](Self::insert)
/// after, [`save`](Self::save) now and then and at the end.
#[derive(Debug)]
pub struct ScanCache {
    file: PathBuf,
    model: ModelHash,
    /// The root as given: scan paths start with it.
    root: PathBuf,
    num_classes: usize,
    /// The header this cache writes (and expects), with the canonical root.
    header: Vec<u8>,
    /// The open log, once there is one (`None`: no file yet, or a bad one to replace).
    log: Option<File>,
    /// Device and inode of `log`, to notice a file replaced by another process's compaction.
    log_id: Option<(u64, u64)>,
    /// The file on disk is unusable: the next save replaces it.
    replace: bool,
    index: HashMap<u128, Slot>,
    /// Bytes of the records the index points at (the rest of the file is garbage).
    live_bytes: u64,
    /// Records made since the last save, in order.
    pending: Vec<u8>,
    ops: Vec<Op>,
    /// A failed automatic append, reported by the next [`save`](Self::save).
    deferred: Option<std::io::Error>,
}

/// What reading a log found.
struct Loaded {
    /// End of the last whole record.
    valid_end: u64,
    file_len: u64,
}

impl ScanCache {
    /// Open (or start) the cache of `model` (with `num_classes` outputs) over the dataset at
    /// `root`, in `dir` ([`default_dir`] normally). An unusable file is discarded, not an error.
    pub fn open(
        dir: &Path,
        model: &ModelHash,
        root: &Path,
        num_classes: usize,
    ) -> Result<(Self, LoadOutcome), CacheError> {
        let root_id = root.canonicalize().or_else(|_| std::path::absolute(root)).unwrap_or_else(|_| root.to_owned());
        let absolute = |p: &Path| fold_absolute(&std::path::absolute(p).unwrap_or_else(|_| p.to_owned()));
        let dir_abs = dir.canonicalize().unwrap_or_else(|_| absolute(dir));
        let root_abs = absolute(root);
        let inside = [&root_id, &root_abs].into_iter().find_map(|r| dir_abs.strip_prefix(r).ok());
        let hidden = |c: Component<'_>| matches!(c, Component::Normal(n) if n.as_encoded_bytes().starts_with(b"."));
        if inside.is_some_and(|rel| !rel.components().any(hidden)) {
            return Err(CacheError::InsideDataset { dir: dir.to_owned(), root: root.to_owned() });
        }
        let root_bytes = path_bytes(&root_id).unwrap_or_default();
        let root_hash = hex(&Sha256::digest(&root_bytes)[..8]);
        let file = dir.join(format!("scan-{}-{root_hash}.bin", model.hex(8)));
        let mut header = Vec::with_capacity(64 + root_bytes.len());
        header.extend_from_slice(MAGIC);
        put_u32(&mut header, FORMAT_VERSION);
        header.extend_from_slice(&model.0);
        put_u32(&mut header, num_classes as u32);
        put_u32(&mut header, STORED_TOP_K as u32);
        put_u32(&mut header, root_bytes.len() as u32);
        header.extend_from_slice(&root_bytes);
        let crc = crc32fast::hash(&header);
        put_u32(&mut header, crc);
        let mut cache = Self {
            file,
            model: *model,
            root: root.to_owned(),
            num_classes,
            header,
            log: None,
            log_id: None,
            replace: false,
            index: HashMap::new(),
            live_bytes: 0,
            pending: Vec::new(),
            ops: Vec::new(),
            deferred: None,
        };
        let outcome = cache.open_log();
        Ok((cache, outcome))
    }

    /// Open, check, index, repair and maybe compact the file (under its lock).
    fn open_log(&mut self) -> LoadOutcome {
        let opened = OpenOptions::new().read(true).write(true).open(&self.file);
        let log = match opened {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return LoadOutcome::Missing,
            Err(e) => return self.discard(format!("cannot open it: {e}")),
            Ok(f) => f,
        };
        match log.metadata() {
            Ok(m) if m.is_file() => {}
            Ok(_) => return self.discard("not a regular file".into()),
            Err(e) => return self.discard(format!("cannot read it: {e}")),
        }
        if let Err(e) = lock(&log) {
            return self.discard(format!("cannot lock it: {e}"));
        }
        let loaded = match self.load(&log) {
            Ok(l) => l,
            Err(reason) => return self.discard(reason),
        };
        self.log_id = file_id(&log);
        self.log = Some(log);
        let ignored = loaded.file_len - loaded.valid_end;
        if ignored > 0 {
            // Cut the torn tail now, under the lock: appends must follow the last whole record.
            let cut = self.log.as_ref().map(|f| f.set_len(loaded.valid_end));
            if let Some(Err(e)) = cut {
                self.log = None;
                return self.discard(format!("cannot repair its damaged end: {e}"));
            }
        }
        let garbage = loaded.valid_end - self.header.len() as u64 - self.live_bytes;
        if loaded.valid_end >= COMPACT_MIN_BYTES && garbage > self.live_bytes {
            // A failed compaction leaves the old file as it was: still correct, only larger.
            let _ = self.compact();
        }
        if let Some(f) = &self.log {
            unlock(f);
        }
        let entries = self.index.len();
        if ignored > 0 {
            LoadOutcome::Recovered { entries, ignored_bytes: ignored }
        } else {
            LoadOutcome::Loaded { entries }
        }
    }

    fn discard(&mut self, reason: String) -> LoadOutcome {
        self.index.clear();
        self.live_bytes = 0;
        self.replace = true;
        self.log = None;
        self.log_id = None;
        LoadOutcome::Discarded { reason }
    }

    /// Read a whole log into the index (replacing it). `Err`: the header is not ours; a bad
    /// record only ends the valid part.
    fn load(&mut self, log: &File) -> Result<Loaded, String> {
        let file_len = log.metadata().map_err(|e| format!("cannot read it: {e}"))?.len();
        let mut r = std::io::BufReader::with_capacity(1 << 20, log);
        r.seek(SeekFrom::Start(0)).map_err(|e| format!("cannot read it: {e}"))?;
        let mut head = vec![0u8; MAGIC.len() + 4];
        if read_up_to(&mut r, &mut head)? < head.len() || &head[..MAGIC.len()] != MAGIC {
            return Err("not a camscope scan cache (bad header)".into());
        }
        let version = u32::from_le_bytes(head[MAGIC.len()..].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(format!("format version {version}, this camscope writes {FORMAT_VERSION}"));
        }
        let mut fixed = vec![0u8; 32 + 4 + 4 + 4];
        if read_up_to(&mut r, &mut fixed)? < fixed.len() {
            return Err("truncated header".into());
        }
        let root_len = u32::from_le_bytes(fixed[40..44].try_into().expect("4 bytes")) as usize;
        if root_len > MAX_PATH {
            return Err("corrupt header (root length)".into());
        }
        let mut rest = vec![0u8; root_len + 4];
        if read_up_to(&mut r, &mut rest)? < rest.len() {
            return Err("truncated header".into());
        }
        let header: Vec<u8> = [&head[..], &fixed[..], &rest[..root_len]].concat();
        if crc32fast::hash(&header).to_le_bytes() != rest[root_len..] {
            return Err("header checksum mismatch (corrupt)".into());
        }
        if fixed[..32] != self.model.0 {
            return Err("written for another model".into());
        }
        let classes = u32::from_le_bytes(fixed[32..36].try_into().expect("4 bytes")) as usize;
        if classes != self.num_classes {
            return Err(format!("written for {classes} classes, the model has {}", self.num_classes));
        }
        if u32::from_le_bytes(fixed[36..40].try_into().expect("4 bytes")) as usize != STORED_TOP_K {
            return Err("written with another top-k".into());
        }
        if header.len() + 4 != self.header.len() || header[..] != self.header[..header.len()] {
            return Err("written for another dataset folder".into());
        }
        self.index.clear();
        self.live_bytes = 0;
        let mut at = self.header.len() as u64;
        let max_body = (1 + 4 + MAX_PATH + STAMP_BYTES + 8 * STORED_TOP_K) as u64 + 4 * classes as u64;
        let mut record = Vec::new();
        loop {
            let mut len = [0u8; 4];
            let got = read_up_to(&mut r, &mut len)?;
            if got < 4 {
                break; // the end (got == 0), or a torn length
            }
            let body_len = u32::from_le_bytes(len) as u64;
            if body_len > max_body {
                break;
            }
            record.clear();
            record.extend_from_slice(&len);
            record.resize(4 + body_len as usize + 4, 0);
            if read_up_to(&mut r, &mut record[4..])? < body_len as usize + 4 {
                break;
            }
            let Ok(parsed) = self.check_record(&record) else { break };
            let key = key_hash(parsed.path);
            let rec_len = record.len() as u64;
            let old = match parsed.stamp {
                Some(stamp) => {
                    self.live_bytes += rec_len;
                    self.index.insert(key, Slot::new(at, stamp, parsed.path.len() as u32))
                }
                None => self.index.remove(&key),
            };
            if let Some(old) = old {
                self.live_bytes -= self.record_len(old.path_len as usize);
            }
            at += rec_len;
        }
        Ok(Loaded { valid_end: at, file_len })
    }

    /// Rewrite the live records into a fresh file and rename it over the log (lock held).
    fn compact(&mut self) -> std::io::Result<()> {
        let Some(old) = &self.log else { return Ok(()) };
        let dir = self.file.parent().unwrap_or(Path::new("."));
        let tmp = self.temp_name(dir);
        let result = (|| {
            let mut out = BufWriter::with_capacity(
                1 << 20,
                OpenOptions::new().read(true).write(true).create_new(true).open(&tmp)?,
            );
            out.write_all(&self.header)?;
            // Records not yet saved stay pending: they are appended after.
            let mut slots: Vec<(u128, Slot)> =
                self.index.iter().filter(|(_, s)| s.offset & PENDING == 0).map(|(k, s)| (*k, *s)).collect();
            slots.sort_unstable_by_key(|(_, s)| s.offset);
            let mut at = self.header.len() as u64;
            let mut buf = Vec::new();
            let mut moved = Vec::with_capacity(slots.len());
            for (key, slot) in slots {
                buf.resize(self.record_len(slot.path_len as usize) as usize, 0);
                read_at(old, slot.offset, &mut buf)?;
                out.write_all(&buf)?;
                moved.push((key, at));
                at += buf.len() as u64;
            }
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_data()?;
            lock(&file)?;
            std::fs::rename(&tmp, &self.file)?;
            Ok((file, moved))
        })();
        match result {
            Ok((file, moved)) => {
                for (key, offset) in moved {
                    if let Some(s) = self.index.get_mut(&key) {
                        s.offset = offset;
                    }
                }
                if let Some(old) = &self.log {
                    unlock(old);
                }
                self.log_id = file_id(&file);
                self.log = Some(file);
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    fn temp_name(&self, dir: &Path) -> PathBuf {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let name = self.file.file_name().map_or_else(Default::default, |n| n.to_string_lossy().into_owned());
        dir.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()))
    }

    /// The cache file (it may not exist yet).
    pub fn file(&self) -> &Path {
        &self.file
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The scores of `image` (a path from the scan of the root), if cached with this stamp:
    /// the whole record, read from the file (~4 KB for 1000 classes).
    pub fn lookup(&self, image: &Path, stamp: &FileStamp) -> Option<CachedScores> {
        let (slot, key) = self.slot(image, stamp)?;
        let mut rec = vec![0u8; self.record_len(slot.path_len as usize) as usize];
        self.read_record(slot, &mut rec).ok()?;
        let parsed = self.check_record(&rec).ok()?;
        if parsed.path != key.as_slice() {
            return None;
        }
        let at = RECORD_HEAD + parsed.path.len() + STAMP_BYTES + 8 * STORED_TOP_K;
        let probabilities: Box<[f32]> = rec[at..at + 4 * self.num_classes].chunks_exact(4).map(f32_le).collect();
        Some(CachedScores { top: parsed.top, probabilities })
    }

    /// The triage record of `image` with truth `truth`, if cached with this stamp: reads only
    /// the record's top-k and, when the truth ranks below them, its one probability, so a
    /// reopened million-image folder reads ~100 bytes an image instead of 4 KB.
    pub fn lookup_result(&self, image: &Path, stamp: &FileStamp, truth: Option<usize>) -> Option<ImageResult> {
        let (slot, key) = self.slot(image, stamp)?;
        let head_len = RECORD_HEAD + slot.path_len as usize + STAMP_BYTES + 8 * STORED_TOP_K;
        let mut head = vec![0u8; head_len];
        self.read_record(slot, &mut head).ok()?;
        if head[4] != KIND_SCORES || &head[RECORD_HEAD..RECORD_HEAD + key.len()] != key.as_slice() {
            return None;
        }
        let top = self.parse_top(&head[RECORD_HEAD + key.len() + STAMP_BYTES..]).ok()?;
        let p_truth = match truth {
            None => None,
            Some(t) if t >= self.num_classes => Some(0.0),
            Some(t) => match top.iter().find(|c| c.class == t) {
                Some(c) => Some(c.probability),
                None => {
                    let mut p = [0u8; 4];
                    let at = head_len as u64 + 4 * t as u64;
                    self.read_record(Slot { offset: slot.offset + at, ..slot }, &mut p).ok()?;
                    let p = f32::from_le_bytes(p);
                    if !(0.0..=1.0).contains(&p) {
                        return None;
                    }
                    Some(p)
                }
            },
        };
        Some(ImageResult { path: image.to_owned(), truth, top, p_truth })
    }

    /// The slot of `image` if its stamp matches, and the key bytes.
    fn slot(&self, image: &Path, stamp: &FileStamp) -> Option<(Slot, Vec<u8>)> {
        let key = path_bytes(self.key(image))?;
        let slot = self.index.get(&key_hash(&key)).filter(|s| s.stamp() == *stamp)?;
        Some((*slot, key))
    }

    /// Read `buf.len()` bytes at `slot.offset` from the pending buffer or the file.
    fn read_record(&self, slot: Slot, buf: &mut [u8]) -> std::io::Result<()> {
        if slot.offset & PENDING != 0 {
            let at = (slot.offset & !PENDING) as usize;
            let src = self.pending.get(at..at + buf.len()).ok_or(std::io::ErrorKind::UnexpectedEof)?;
            buf.copy_from_slice(src);
            return Ok(());
        }
        match &self.log {
            Some(f) => read_at(f, slot.offset, buf),
            None => Err(std::io::ErrorKind::NotFound.into()),
        }
    }

    /// Record the model's probabilities for `image` as it is at `stamp`, replacing any entry.
    /// The record waits in memory for [`save`](Self::save) (or is appended once 16 MB wait).
    ///
    /// # Panics
    /// If `probabilities` does not have one value per class: the caller mixed up models.
    pub fn insert(&mut self, image: &Path, stamp: FileStamp, probabilities: &[f32]) {
        assert_eq!(
            probabilities.len(),
            self.num_classes,
            "scores for {} do not match the cached model",
            image.display()
        );
        let Some(key) = path_bytes(self.key(image)) else { return };
        if key.len() > MAX_PATH {
            return;
        }
        let offset = PENDING | self.pending.len() as u64;
        let top = top_k(probabilities, STORED_TOP_K);
        encode_record(&mut self.pending, KIND_SCORES, &key, Some((&stamp, &top, probabilities)));
        let slot = Slot::new(offset, stamp, key.len() as u32);
        self.put(key_hash(&key), slot);
        self.ops.push(Op::Put(key_hash(&key), slot));
        if self.pending.len() >= PENDING_FLUSH_BYTES {
            if let Err(e) = self.flush() {
                self.deferred.get_or_insert(e);
            }
        }
    }

    fn put(&mut self, key: u128, slot: Slot) {
        self.live_bytes += self.record_len(slot.path_len as usize);
        if let Some(old) = self.index.insert(key, slot) {
            self.live_bytes -= self.record_len(old.path_len as usize);
        }
    }

    fn remove(&mut self, key: u128) {
        if let Some(old) = self.index.remove(&key) {
            self.live_bytes -= self.record_len(old.path_len as usize);
        }
    }

    /// Keep only entries whose path relative to the root passes `keep` (e.g. the images the
    /// last full scan found), so deleted files do not accumulate. Reads every entry's path
    /// from the file (the index holds only hashes).
    pub fn retain(&mut self, mut keep: impl FnMut(&Path) -> bool) {
        let slots: Vec<(u128, Slot)> = self.index.iter().map(|(k, s)| (*k, *s)).collect();
        for (key, slot) in slots {
            let mut head = vec![0u8; RECORD_HEAD + slot.path_len as usize];
            // An unreadable record cannot be judged; it stays (a lookup of it misses anyway).
            if self.read_record(slot, &mut head).is_err() {
                continue;
            }
            let Some(path) = path_from_bytes(&head[RECORD_HEAD..]) else { continue };
            if !keep(&path) {
                self.remove(key);
                encode_record(&mut self.pending, KIND_REMOVED, &head[RECORD_HEAD..], None);
                self.ops.push(Op::Remove(key));
            }
        }
    }

    /// Append what changed since the cache was opened or saved (nothing when nothing did); a
    /// file discarded at open is replaced by a fresh one.
    pub fn save(&mut self) -> Result<(), CacheError> {
        let werr = |path: &Path| {
            let path = path.to_owned();
            move |source| CacheError::Write { path, source }
        };
        if let Some(e) = self.deferred.take() {
            return Err(werr(&self.file)(e));
        }
        if self.ops.is_empty() && !self.replace {
            return Ok(());
        }
        self.flush().map_err(werr(&self.file))
    }

    /// Append the pending records at the file's end, under its lock (see the module docs).
    fn flush(&mut self) -> std::io::Result<()> {
        std::fs::create_dir_all(self.file.parent().unwrap_or(Path::new(".")))?;
        if self.replace {
            // Reopen by name: another process may have replaced the bad file already.
            self.log = None;
            self.replace = false;
        }
        // Three tries: the file may be replaced by another process between our open and lock.
        for _ in 0..3 {
            if self.log.is_none() {
                let f = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&self.file)?;
                if !f.metadata()?.is_file() {
                    self.write_fresh()?; // renamed over whatever stands there
                    continue;
                }
                lock(&f)?;
                if f.metadata()?.len() == 0 {
                    (&f).write_all(&self.header)?;
                    self.index.clear();
                    self.live_bytes = 0;
                } else {
                    match self.load(&f) {
                        Ok(l) => f.set_len(l.valid_end)?, // a torn tail left by a killed process
                        Err(_) => {
                            // Another version's file, or a damaged one: start afresh.
                            unlock(&f);
                            self.write_fresh()?;
                            continue;
                        }
                    }
                }
                self.replay();
                self.log_id = file_id(&f);
                self.log = Some(f);
            } else {
                let f = self.log.as_ref().expect("checked");
                lock(f)?;
                let on_disk = std::fs::metadata(&self.file).ok().and_then(|m| meta_id(&m));
                if on_disk.is_none() {
                    // Deleted while open (by the user, say): write what we hold back under its name.
                    self.compact()?;
                    if let Some(f) = &self.log {
                        unlock(f);
                    }
                    continue;
                }
                if on_disk != self.log_id {
                    // Replaced by another process's compaction: reload from the path.
                    unlock(f);
                    self.log = None;
                    continue;
                }
            }
            let f = self.log.as_ref().expect("open");
            let end = f.metadata()?.len();
            let written = (|| {
                let mut w = f;
                w.seek(SeekFrom::Start(end))?;
                w.write_all(&self.pending)
            })();
            if let Err(e) = written {
                // Leave no half record for the next append to follow: cut back to where we began.
                let _ = f.set_len(end);
                unlock(f);
                return Err(e);
            }
            unlock(f);
            for op in std::mem::take(&mut self.ops) {
                if let Op::Put(key, _) = op {
                    if let Some(s) = self.index.get_mut(&key).filter(|s| s.offset & PENDING != 0) {
                        s.offset = end + (s.offset & !PENDING);
                    }
                }
            }
            self.pending.clear();
            return Ok(());
        }
        Err(std::io::Error::other(
            "the cache file kept changing under this process; is another camscope compacting it?",
        ))
    }

    /// Replace the file with a fresh one holding only the header (temporary name, renamed
    /// over: a reader sees the old file or the new one); the index keeps only pending entries.
    fn write_fresh(&mut self) -> std::io::Result<()> {
        let dir = self.file.parent().unwrap_or(Path::new(".")).to_owned();
        let tmp = self.temp_name(&dir);
        let made = (|| {
            let mut f = OpenOptions::new().read(true).write(true).create_new(true).open(&tmp)?;
            f.write_all(&self.header)?;
            lock(&f)?;
            std::fs::rename(&tmp, &self.file)?;
            Ok(f)
        })();
        let f = match made {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        unlock(&f);
        self.index.clear();
        self.live_bytes = 0;
        self.replay();
        self.log_id = file_id(&f);
        self.log = Some(f);
        self.replace = false;
        Ok(())
    }

    /// Apply the pending changes to a freshly loaded index.
    fn replay(&mut self) {
        for op in self.ops.clone() {
            match op {
                Op::Put(key, slot) => self.put(key, slot),
                Op::Remove(key) => self.remove(key),
            }
        }
    }

    /// Key of an image: its path relative to the root (as given), else the path itself.
    fn key<'a>(&self, image: &'a Path) -> &'a Path {
        image.strip_prefix(&self.root).unwrap_or(image)
    }

    /// Bytes of a scores record whose path has `path_len` bytes.
    fn record_len(&self, path_len: usize) -> u64 {
        (RECORD_HEAD + path_len + STAMP_BYTES + 8 * STORED_TOP_K + 4 + 4 * self.num_classes) as u64
    }

    /// Check a whole record (length to CRC): `Err` when it is not one this cache wrote.
    fn check_record<'r>(&self, rec: &'r [u8]) -> Result<Record<'r>, &'static str> {
        if rec.len() < RECORD_HEAD + 4 {
            return Err("short");
        }
        let (body, crc) = rec.split_at(rec.len() - 4);
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err("checksum");
        }
        let path_len = u32::from_le_bytes(rec[5..9].try_into().expect("4 bytes")) as usize;
        let path = rec.get(RECORD_HEAD..RECORD_HEAD + path_len).ok_or("path")?;
        let _ = path_from_bytes(path).ok_or("path")?;
        match rec[4] {
            KIND_REMOVED if body.len() == RECORD_HEAD + path_len => Ok(Record { path, stamp: None, top: Vec::new() }),
            KIND_SCORES if rec.len() as u64 == self.record_len(path_len) => {
                let s = &rec[RECORD_HEAD + path_len..];
                let stamp = FileStamp {
                    size: u64::from_le_bytes(s[..8].try_into().expect("8 bytes")),
                    mtime_secs: i64::from_le_bytes(s[8..16].try_into().expect("8 bytes")),
                    mtime_nanos: u32::from_le_bytes(s[16..20].try_into().expect("4 bytes")),
                };
                if stamp.mtime_nanos >= 1_000_000_000 {
                    return Err("timestamp");
                }
                let top = self.parse_top(&s[STAMP_BYTES..])?;
                let probs = &s[STAMP_BYTES + 8 * STORED_TOP_K..s.len() - 4];
                if !probs.chunks_exact(4).map(f32_le).all(|p| (0.0..=1.0).contains(&p)) {
                    return Err("probability");
                }
                Ok(Record { path, stamp: Some(stamp), top })
            }
            _ => Err("kind or length"),
        }
    }

    /// The top-k list at the start of `bytes`.
    fn parse_top(&self, bytes: &[u8]) -> Result<Vec<ClassProb>, &'static str> {
        let mut top = Vec::with_capacity(STORED_TOP_K);
        for c in bytes[..8 * STORED_TOP_K].chunks_exact(8) {
            let class = u32::from_le_bytes(c[..4].try_into().expect("4 bytes"));
            let probability = f32_le(&c[4..]);
            if !(0.0..=1.0).contains(&probability) {
                return Err("probability");
            }
            if class != u32::MAX {
                if class as usize >= self.num_classes {
                    return Err("class");
                }
                top.push(ClassProb { class: class as usize, probability });
            }
        }
        Ok(top)
    }
}

/// A checked record, borrowed from its bytes.
struct Record<'r> {
    path: &'r [u8],
    /// `None` for a removal.
    stamp: Option<FileStamp>,
    top: Vec<ClassProb>,
}

/// Append one record (see the module docs) to `out`.
fn encode_record(out: &mut Vec<u8>, kind: u8, path: &[u8], scores: Option<(&FileStamp, &[ClassProb], &[f32])>) {
    let start = out.len();
    put_u32(out, 0);
    out.push(kind);
    put_u32(out, path.len() as u32);
    out.extend_from_slice(path);
    if let Some((stamp, top, probabilities)) = scores {
        out.extend_from_slice(&stamp.size.to_le_bytes());
        out.extend_from_slice(&stamp.mtime_secs.to_le_bytes());
        put_u32(out, stamp.mtime_nanos);
        for k in 0..STORED_TOP_K {
            // Models with fewer classes than the top-k pad with class u32::MAX.
            let c = top.get(k).map_or((u32::MAX, 0.0), |c| (c.class as u32, c.probability));
            put_u32(out, c.0);
            out.extend_from_slice(&c.1.to_le_bytes());
        }
        for p in probabilities {
            out.extend_from_slice(&p.to_le_bytes());
        }
    }
    let body_len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    let crc = crc32fast::hash(&out[start..]);
    put_u32(out, crc);
}

/// The index key of a path: 128 bits of its SHA-256 (no collision in any real dataset; a
/// lookup also compares the record's path, so one would only cost a miss).
fn key_hash(path: &[u8]) -> u128 {
    u128::from_le_bytes(Sha256::digest(path)[..16].try_into().expect("16 bytes"))
}

fn f32_le(b: &[u8]) -> f32 {
    f32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Fill as much of `buf` as the reader holds; the count read (short only at the end).
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, String> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot read it: {e}")),
        }
    }
    Ok(got)
}

#[cfg(unix)]
fn read_at(f: &File, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    f.read_exact_at(buf, offset)
}
#[cfg(not(unix))]
fn read_at(mut f: &File, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(buf)
}

/// Device and inode: the identity of an open file, to notice a rename over its path.
#[cfg(unix)]
fn meta_id(m: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((m.dev(), m.ino()))
}
#[cfg(not(unix))]
fn meta_id(_: &std::fs::Metadata) -> Option<(u64, u64)> {
    Some((0, 0))
}

fn file_id(f: &File) -> Option<(u64, u64)> {
    f.metadata().ok().and_then(|m| meta_id(&m))
}

/// Wait for an exclusive advisory lock on the log (see the module docs). `File::lock` needs
/// Rust 1.89; camscope builds with 1.85.
#[cfg(unix)]
fn lock(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: flock on a descriptor we own; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
#[cfg(not(unix))]
fn lock(_: &File) -> std::io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn unlock(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: as in `lock`.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
}
#[cfg(not(unix))]
fn unlock(_: &File) {}

/// A path's bytes as stored (raw on Unix; UTF-8 elsewhere, `None` if it is not).
#[cfg(unix)]
fn path_bytes(path: &Path) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    Some(path.as_os_str().as_bytes().to_vec())
}
#[cfg(not(unix))]
fn path_bytes(path: &Path) -> Option<Vec<u8>> {
    path.to_str().map(|s| s.as_bytes().to_vec())
}

#[cfg(unix)]
fn path_from_bytes(bytes: &[u8]) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
}
#[cfg(not(unix))]
fn path_from_bytes(bytes: &[u8]) -> Option<PathBuf> {
    std::str::from_utf8(bytes).ok().map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLASSES: usize = 10;

    fn probs(seed: usize) -> Vec<f32> {
        let logits: Vec<f32> = (0..CLASSES).map(|i| ((i * 7 + seed * 3) % 11) as f32 * 0.9 - 4.0).collect();
        crate::scores::softmax(&logits)
    }

    fn stamp(size: u64, secs: u64) -> FileStamp {
        FileStamp::new(size, UNIX_EPOCH + Duration::new(secs, 123_456_789))
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        cache_dir: PathBuf,
        root: PathBuf,
        model: ModelHash,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        std::fs::create_dir(&root).unwrap();
        Fixture { cache_dir: dir.path().join("cache"), root, model: ModelHash::of_bytes(b"model one"), _dir: dir }
    }

    fn open(f: &Fixture) -> (ScanCache, LoadOutcome) {
        ScanCache::open(&f.cache_dir, &f.model, &f.root, CLASSES).unwrap()
    }

    /// A saved cache with three images.
    fn saved(f: &Fixture) -> ScanCache {
        let (mut c, outcome) = open(f);
        assert_eq!(outcome, LoadOutcome::Missing);
        for i in 0..3 {
            c.insert(&f.root.join(format!("cls/{i}.png")), stamp(100 + i as u64, 1_700_000_000), &probs(i));
        }
        c.save().unwrap();
        c
    }

    /// Every entry of `c` for the three images of [`saved`], as lookups see them.
    fn contents(f: &Fixture, c: &ScanCache) -> Vec<Option<CachedScores>> {
        (0..3).map(|i| c.lookup(&f.root.join(format!("cls/{i}.png")), &stamp(100 + i as u64, 1_700_000_000))).collect()
    }

    #[test]
    fn round_trip_keeps_every_entry() {
        let f = fixture();
        let before = saved(&f);
        let (after, outcome) = open(&f);
        assert_eq!(outcome, LoadOutcome::Loaded { entries: 3 });
        assert_eq!(contents(&f, &after), contents(&f, &before));
        assert!(contents(&f, &after).iter().all(Option::is_some));
        let hit = after.lookup(&f.root.join("cls/1.png"), &stamp(101, 1_700_000_000)).unwrap();
        let p = probs(1);
        assert_eq!(hit.top(), top_k(&p, STORED_TOP_K).as_slice(), "top-k exact");
        for (class, &want) in p.iter().enumerate() {
            // Bit-equal: a cached loss must equal the fresh one (a quantised cache moved it in the 4th digit).
            assert_eq!(hit.probability(class).to_bits(), want.to_bits(), "class {class}");
        }
        let fresh = ImageResult::from_probabilities(PathBuf::from("x.png"), Some(9), &p, STORED_TOP_K);
        let cached = hit.result(PathBuf::from("x.png"), Some(9));
        assert_eq!(cached.loss(), fresh.loss());
        assert_eq!(hit.probability(CLASSES), 0.0);
        let r = hit.result(PathBuf::from("x.png"), Some(9));
        assert_eq!(r.p_truth, Some(hit.probability(9)));
        assert!(after.file().starts_with(&f.cache_dir));
        assert!(std::fs::read_dir(&f.cache_dir).unwrap().count() == 1, "no temporary file left behind");
    }

    #[test]
    fn lookup_result_reads_the_exact_probability_of_any_truth() {
        let f = fixture();
        let unsaved = saved(&f);
        let (c, _) = open(&f);
        for i in 0..3 {
            let img = f.root.join(format!("cls/{i}.png"));
            let s = stamp(100 + i as u64, 1_700_000_000);
            let p = probs(i);
            for truth in [None, Some(0), Some(3), Some(9), Some(CLASSES + 2)] {
                let fresh = ImageResult::from_probabilities(img.clone(), truth, &p, STORED_TOP_K);
                let want = ImageResult { p_truth: truth.map(|t| p.get(t).copied().unwrap_or(0.0)), ..fresh };
                for cache in [&c, &unsaved] {
                    let got = cache.lookup_result(&img, &s, truth).unwrap();
                    assert_eq!(got, want, "image {i}, truth {truth:?}");
                    assert_eq!(got.p_truth.map(f32::to_bits), want.p_truth.map(f32::to_bits));
                }
            }
            assert!(c.lookup_result(&img, &stamp(1, 1), Some(0)).is_none(), "another stamp misses");
        }
        // Entries not yet saved are answered from memory.
        let (mut c, _) = open(&f);
        let img = f.root.join("new.png");
        c.insert(&img, stamp(5, 5), &probs(8));
        assert_eq!(c.lookup_result(&img, &stamp(5, 5), Some(2)).unwrap().p_truth, Some(probs(8)[2]));
    }

    #[test]
    fn a_save_appends_only_the_new_records() {
        let f = fixture();
        let mut c = saved(&f);
        let before = std::fs::read(c.file()).unwrap();
        c.insert(&f.root.join("cls/9.png"), stamp(9, 9), &probs(9));
        c.save().unwrap();
        let after = std::fs::read(c.file()).unwrap();
        assert_eq!(&after[..before.len()], &before[..], "earlier records untouched");
        assert_eq!((after.len() - before.len()) as u64, c.record_len("cls/9.png".len()), "one record appended");
        let (c, outcome) = open(&f);
        assert_eq!(outcome, LoadOutcome::Loaded { entries: 4 });
        assert!(c.lookup(&f.root.join("cls/9.png"), &stamp(9, 9)).is_some());
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_the_records_before_it_are_kept() {
        let f = fixture();
        let c = saved(&f);
        let file = c.file().to_owned();
        let whole = std::fs::read(&file).unwrap();
        let record = c.record_len("cls/0.png".len()) as usize;
        drop(c);
        // A save killed inside the last record, inside its length, and one stray byte after it.
        for (len, entries) in [(whole.len() - record / 2, 2), (whole.len() - record + 2, 2), (whole.len() - 1, 2)] {
            std::fs::write(&file, &whole[..len]).unwrap();
            let (mut c, outcome) = open(&f);
            let ignored_bytes = (len - (whole.len() - record)) as u64;
            assert_eq!(outcome, LoadOutcome::Recovered { entries, ignored_bytes }, "cut at {len}");
            assert_eq!(std::fs::metadata(&file).unwrap().len() as usize, whole.len() - record, "tail cut off");
            // Appending after the repair gives a whole log again.
            c.insert(&f.root.join("cls/2.png"), stamp(102, 1_700_000_000), &probs(2));
            c.save().unwrap();
            let (c, outcome) = open(&f);
            assert_eq!(outcome, LoadOutcome::Loaded { entries: 3 });
            assert_eq!(contents(&f, &c), contents(&f, &saved_copy(&f, &whole)));
        }
        let mut longer = whole.clone();
        longer.push(7);
        std::fs::write(&file, &longer).unwrap();
        assert_eq!(open(&f).1, LoadOutcome::Recovered { entries: 3, ignored_bytes: 1 });
    }

    /// A cache opened on a copy of `bytes` (in a fixture of its own), for comparing contents.
    fn saved_copy(f: &Fixture, bytes: &[u8]) -> ScanCache {
        let g = Fixture {
            _dir: tempfile::tempdir().unwrap(),
            cache_dir: f.cache_dir.clone(),
            root: f.root.clone(),
            model: f.model,
        };
        let copy = g._dir.path().join("copy");
        std::fs::create_dir(&copy).unwrap();
        let name = open(f).0.file().file_name().unwrap().to_owned();
        std::fs::write(copy.join(&name), bytes).unwrap();
        ScanCache::open(&copy, &g.model, &g.root, CLASSES).unwrap().0
    }

    #[test]
    fn a_damaged_record_ends_the_log_and_a_damaged_header_discards_it() {
        let f = fixture();
        let c = saved(&f);
        let file = c.file().to_owned();
        let good = std::fs::read(&file).unwrap();
        let header = c.header.len();
        let record = c.record_len("cls/0.png".len()) as usize;
        drop(c);
        // A flipped byte in record k: the k records before it are kept.
        for k in 0..3 {
            for within in [0, 4, 9, 30, record - 5, record - 1] {
                let mut bad = good.clone();
                bad[header + k * record + within] ^= 0x5a;
                std::fs::write(&file, &bad).unwrap();
                let (_, outcome) = open(&f);
                let ignored_bytes = ((3 - k) * record) as u64;
                assert_eq!(outcome, LoadOutcome::Recovered { entries: k, ignored_bytes }, "record {k}, byte {within}");
            }
        }
        // Anywhere in the header, or a file cut inside it: discarded whole, then rebuilt.
        let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
        for at in [0, 9, 20, 50, header - 5, header - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x5a;
            cases.push((format!("header byte {at} flipped"), bad));
        }
        for len in [0, 7, 40, header - 1] {
            cases.push((format!("truncated to {len}"), good[..len].to_vec()));
        }
        for (what, bytes) in cases {
            std::fs::write(&file, &bytes).unwrap();
            let (mut c, outcome) = open(&f);
            assert!(matches!(outcome, LoadOutcome::Discarded { .. }), "{what}: {outcome:?}");
            assert!(c.is_empty(), "{what}");
            c.save().unwrap();
            let (_, outcome) = open(&f);
            assert_eq!(outcome, LoadOutcome::Loaded { entries: 0 }, "{what}: rebuilt file loads");
        }
    }

    #[test]
    fn a_record_with_a_valid_checksum_but_impossible_values_ends_the_log() {
        let f = fixture();
        let c = saved(&f);
        let file = c.file().to_owned();
        let good = std::fs::read(&file).unwrap();
        let (header, record) = (c.header.len(), c.record_len("cls/0.png".len()) as usize);
        drop(c);
        let reseal = |bytes: &mut Vec<u8>, start: usize| {
            let end = start + record - 4;
            let crc = crc32fast::hash(&bytes[start..end]);
            bytes[end..end + 4].copy_from_slice(&crc.to_le_bytes());
        };
        let start = header + record; // the second record
        let stamp_at = start + RECORD_HEAD + "cls/1.png".len();
        for (what, at, value) in [
            ("a probability above 1", stamp_at + STAMP_BYTES + 8 * STORED_TOP_K + 8, 2.0f32.to_le_bytes()),
            ("a top class out of range", stamp_at + STAMP_BYTES, 77u32.to_le_bytes()),
            ("nanoseconds of 2 s", stamp_at + 16, 2_000_000_000u32.to_le_bytes()),
            ("an unknown kind", start + 4, [9, 0, 0, 0]),
        ] {
            let mut bad = good.clone();
            let n = if what == "an unknown kind" { 1 } else { 4 };
            bad[at..at + n].copy_from_slice(&value[..n]);
            reseal(&mut bad, start);
            std::fs::write(&file, &bad).unwrap();
            let outcome = open(&f).1;
            assert_eq!(outcome, LoadOutcome::Recovered { entries: 1, ignored_bytes: 2 * record as u64 }, "{what}");
        }
    }

    #[test]
    fn an_older_version_is_discarded_with_its_version_named() {
        let f = fixture();
        let file = saved(&f).file().to_owned();
        let mut bytes = std::fs::read(&file).unwrap();
        // Version 2 was a whole-file blob with the same magic: it must not be read as a log.
        bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
        std::fs::write(&file, &bytes).unwrap();
        let (mut c, outcome) = open(&f);
        assert_eq!(outcome, LoadOutcome::Discarded { reason: "format version 2, this camscope writes 3".into() });
        c.insert(&f.root.join("a.png"), stamp(1, 1), &probs(0));
        c.save().unwrap();
        assert_eq!(open(&f).1, LoadOutcome::Loaded { entries: 1 }, "replaced by this version's file");
    }

    #[test]
    fn superseded_records_are_compacted_away_on_open() {
        let f = fixture();
        let (mut c, _) = open(&f);
        let images: Vec<PathBuf> = (0..50).map(|i| f.root.join(format!("d/{i:03}.png"))).collect();
        let per_round = c.record_len("d/000.png".len()) * images.len() as u64;
        let rounds = COMPACT_MIN_BYTES / per_round + 3;
        for round in 0..rounds {
            for (i, img) in images.iter().enumerate() {
                c.insert(img, stamp(i as u64, round), &probs(i + round as usize));
            }
            c.save().unwrap();
        }
        let big = std::fs::metadata(c.file()).unwrap().len();
        assert!(big > COMPACT_MIN_BYTES);
        drop(c);
        let (c, outcome) = open(&f);
        assert_eq!(outcome, LoadOutcome::Loaded { entries: 50 });
        let small = std::fs::metadata(c.file()).unwrap().len();
        assert_eq!(small, c.header.len() as u64 + per_round, "only the live records remain");
        for (i, img) in images.iter().enumerate() {
            let last = rounds - 1;
            let hit = c.lookup(img, &stamp(i as u64, last)).expect("latest entry");
            assert_eq!(hit.probability(3).to_bits(), probs(i + last as usize)[3].to_bits());
        }
        assert_eq!(std::fs::read_dir(&f.cache_dir).unwrap().count(), 1, "no temporary file left behind");
        assert_eq!(open(&f).1, LoadOutcome::Loaded { entries: 50 });
    }

    #[test]
    fn two_processes_share_one_file_and_survive_each_others_compaction() {
        let f = fixture();
        let (mut a, _) = open(&f);
        let (mut b, _) = open(&f);
        a.insert(&f.root.join("a.png"), stamp(1, 1), &probs(1));
        b.insert(&f.root.join("b.png"), stamp(2, 2), &probs(2));
        a.save().unwrap();
        b.save().unwrap(); // the file appeared after b opened: b reads it, then appends
        a.insert(&f.root.join("a2.png"), stamp(3, 3), &probs(3));
        a.save().unwrap();
        let (c, outcome) = open(&f);
        assert_eq!(outcome, LoadOutcome::Loaded { entries: 3 });
        for (name, s) in [("a.png", stamp(1, 1)), ("b.png", stamp(2, 2)), ("a2.png", stamp(3, 3))] {
            assert!(c.lookup(&f.root.join(name), &s).is_some(), "{name}");
        }
        // A third process compacts the file (renamed over) while `a` still has the old one open.
        let per = c.record_len("x/000.png".len());
        for round in 0..(COMPACT_MIN_BYTES / (per * 20) + 2) {
            let (mut w, _) = open(&f);
            for i in 0..20 {
                w.insert(&f.root.join(format!("x/{i:03}.png")), stamp(i, round), &probs(i as usize));
            }
            w.save().unwrap();
        }
        let (compacted, _) = open(&f);
        drop(compacted);
        a.insert(&f.root.join("late.png"), stamp(4, 4), &probs(4));
        a.save().unwrap();
        assert!(a.lookup(&f.root.join("b.png"), &stamp(2, 2)).is_some(), "a reloaded the new file");
        let (c, outcome) = open(&f);
        assert_eq!(outcome, LoadOutcome::Loaded { entries: 24 });
        assert!(c.lookup(&f.root.join("late.png"), &stamp(4, 4)).is_some(), "not lost in the old file");
    }

    #[test]
    fn the_same_root_spelt_differently_shares_the_cache() {
        let f = fixture();
        saved(&f);
        std::fs::create_dir(f.root.join("cls")).unwrap();
        let other = f.root.join("cls/..");
        let (c, outcome) = ScanCache::open(&f.cache_dir, &f.model, &other, CLASSES).unwrap();
        assert_eq!(outcome, LoadOutcome::Loaded { entries: 3 });
        assert!(c.lookup(&other.join("cls/0.png"), &stamp(100, 1_700_000_000)).is_some());
    }

    #[test]
    fn changed_size_or_mtime_misses_and_insert_replaces() {
        let f = fixture();
        let mut c = saved(&f);
        let img = f.root.join("cls/0.png");
        assert!(c.lookup(&img, &stamp(100, 1_700_000_000)).is_some());
        assert!(c.lookup(&img, &stamp(999, 1_700_000_000)).is_none(), "size changed");
        assert!(c.lookup(&img, &stamp(100, 1_700_000_001)).is_none(), "mtime changed");
        let nanos = FileStamp { mtime_nanos: 0, ..stamp(100, 1_700_000_000) };
        assert!(c.lookup(&img, &nanos).is_none(), "sub-second mtime changed");
        c.insert(&img, stamp(100, 1_700_000_001), &probs(7));
        c.save().unwrap();
        let (c, _) = open(&f);
        assert_eq!(c.len(), 3);
        assert!(c.lookup(&img, &stamp(100, 1_700_000_000)).is_none());
        assert_eq!(c.lookup(&img, &stamp(100, 1_700_000_001)).unwrap().top()[0].class, top_k(&probs(7), 1)[0].class);
    }

    #[test]
    fn another_model_or_class_count_is_discarded() {
        let f = fixture();
        saved(&f);
        let other = ModelHash::of_bytes(b"model two");
        let (c, outcome) = ScanCache::open(&f.cache_dir, &other, &f.root, CLASSES).unwrap();
        assert_eq!(outcome, LoadOutcome::Missing, "another model has its own file");
        assert!(c.is_empty());
        // A file renamed or copied onto another model's name is still refused by its header.
        let mine = open(&f).0.file().to_owned();
        std::fs::copy(&mine, c.file()).unwrap();
        let (c, outcome) = ScanCache::open(&f.cache_dir, &other, &f.root, CLASSES).unwrap();
        assert_eq!(outcome, LoadOutcome::Discarded { reason: "written for another model".into() });
        assert!(c.is_empty());
        let (_, outcome) = ScanCache::open(&f.cache_dir, &f.model, &f.root, CLASSES + 1).unwrap();
        assert!(matches!(outcome, LoadOutcome::Discarded { reason } if reason.contains("classes")));
    }

    #[test]
    fn retain_drops_entries_and_save_skips_when_unchanged() {
        let f = fixture();
        let mut c = saved(&f);
        let file = c.file().to_owned();
        std::fs::remove_file(&file).unwrap();
        c.save().unwrap();
        assert!(!file.exists(), "nothing changed since the last save: no write");
        c.retain(|p| p != Path::new("cls/1.png"));
        assert_eq!(c.len(), 2);
        c.save().unwrap();
        assert_eq!(open(&f).1, LoadOutcome::Loaded { entries: 2 });
    }

    #[test]
    fn cache_inside_the_dataset_is_refused_unless_hidden() {
        let f = fixture();
        for inside in [f.root.clone(), f.root.join("cache"), f.root.join("a/../cache/camscope")] {
            let err = ScanCache::open(&inside, &f.model, &f.root, CLASSES).unwrap_err();
            assert!(matches!(err, CacheError::InsideDataset { .. }), "{}", inside.display());
            assert!(err.to_string().contains("set CAMSCOPE_CACHE_DIR to a folder outside it"), "{err}");
        }
        // The dataset is the home folder: `~/.cache/camscope` is hidden from the scan, so allowed.
        let (mut c, _) = ScanCache::open(&f.root.join(".cache/camscope"), &f.model, &f.root, CLASSES).unwrap();
        c.insert(&f.root.join("a.png"), stamp(1, 1), &probs(0));
        c.save().unwrap();
        assert!(crate::dataset::scan::Listing::of(&f.root).unwrap().images.is_empty());
    }

    #[test]
    fn directory_comes_from_the_environment_in_order() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| OsString::from(v))
        };
        const ALL: &[(&str, &str)] = &[("CAMSCOPE_CACHE_DIR", "/c"), ("XDG_CACHE_HOME", "/x"), ("HOME", "/h")];
        assert_eq!(dir_from_env(env(ALL)).unwrap(), Path::new("/c"));
        assert_eq!(dir_from_env(env(&ALL[1..])).unwrap(), Path::new("/x/camscope"));
        assert_eq!(
            dir_from_env(env(&[("XDG_CACHE_HOME", "rel"), ("HOME", "/h")])).unwrap(),
            Path::new("/h/.cache/camscope")
        );
        assert_eq!(
            dir_from_env(env(&[("CAMSCOPE_CACHE_DIR", ""), ("HOME", "/h")])).unwrap(),
            Path::new("/h/.cache/camscope")
        );
        assert!(matches!(dir_from_env(env(&[])), Err(CacheError::NoDirectory)));
    }

    #[test]
    fn stamps_before_and_after_the_epoch() {
        let before_epoch = UNIX_EPOCH - Duration::new(5, 250_000_000);
        let s = FileStamp::new(1, before_epoch);
        assert_eq!((s.mtime_secs, s.mtime_nanos), (-6, 750_000_000));
        assert_eq!(s.mtime(), before_epoch);
        assert_eq!(stamp(1, 42).mtime(), UNIX_EPOCH + Duration::new(42, 123_456_789));
    }

    #[test]
    fn model_hash_streams_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.onnx");
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(ModelHash::of_file(&path).unwrap(), ModelHash::of_bytes(&bytes));
        assert_ne!(ModelHash::of_bytes(b"a"), ModelHash::of_bytes(b"b"));
        assert_eq!(ModelHash::of_bytes(b"").hex(4), "e3b0c442");
        assert!(matches!(ModelHash::of_file(&dir.path().join("no")), Err(CacheError::ModelRead { .. })));
    }
}
