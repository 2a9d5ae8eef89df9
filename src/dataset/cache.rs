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
//! where the fresh scan said 7.7445). 1000 classes make ~4.1 KB per image, ~41 MB for 10,000
//! images.
//!
//! ## Format (little-endian), version [`FORMAT_VERSION`]
//! `magic "CAMSCAN\0"`, `version u32`, `model hash [32]`, `classes u32`, `top-k u32`,
//! `root length u32`, `root bytes`, `entries u32`, then per entry `path length u32`,
//! `path bytes`, `size u64`, `mtime seconds i64`, `mtime nanoseconds u32`, `top-k ×
//! (class u32, p f32)`, `classes × f32`; last, SHA-256 of everything before it. A file that
//! is truncated, fails the checksum, has another version, model, class count or root, or
//! does not parse to the byte is discarded whole ([`LoadOutcome::Discarded`]) and rebuilt:
//! never trusted. Saving writes a temporary file beside it and renames it over, so readers
//! see the old file or the new one, never half of one (two camscope processes saving at
//! once: the last rename wins, both files are whole).

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::stats::{ClassProb, ImageResult, top_k};
use super::truth::fold_absolute;

/// Version of the file layout; any other is discarded.
pub const FORMAT_VERSION: u32 = 2;
const MAGIC: &[u8; 8] = b"CAMSCAN\0";
/// Classes kept exactly (f32) per image: enough for top-5 accuracy and the top-5 list.
pub const STORED_TOP_K: usize = 5;

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
    pub fn of_file(path: &Path) -> Result<Self, CacheError> {
        let err = |source| CacheError::ModelRead { path: path.to_owned(), source };
        let mut file = std::fs::File::open(path).map_err(err)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).map_err(err)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(Self(hasher.finalize().into()))
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
    /// A file was there but not usable; it will be replaced on the next save.
    Discarded {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    stamp: FileStamp,
    scores: CachedScores,
}

/// The cached scores of one model over one dataset root. Owned by the scanning worker:
/// [`lookup`](Self::lookup) before running an image, [`insert`](Self::insert) after,
/// [`save`](Self::save) now and then and at the end.
#[derive(Debug, Clone)]
pub struct ScanCache {
    file: PathBuf,
    model: ModelHash,
    /// The root as given: scan paths start with it.
    root: PathBuf,
    /// Canonical root, recorded in the file.
    root_id: PathBuf,
    num_classes: usize,
    entries: HashMap<PathBuf, Entry>,
    dirty: bool,
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
        let root_hash = hex(&Sha256::digest(path_bytes(&root_id).unwrap_or_default())[..8]);
        let file = dir.join(format!("scan-{}-{root_hash}.bin", model.hex(8)));
        let mut cache = Self {
            file,
            model: *model,
            root: root.to_owned(),
            root_id,
            num_classes,
            entries: HashMap::new(),
            dirty: false,
        };
        let outcome = match crate::fsutil::read_regular(&cache.file) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => LoadOutcome::Missing,
            Err(e) => LoadOutcome::Discarded { reason: format!("cannot read it: {e}") },
            Ok(bytes) => match cache.decode(&bytes) {
                Ok(entries) => {
                    cache.entries = entries;
                    LoadOutcome::Loaded { entries: cache.entries.len() }
                }
                Err(reason) => {
                    cache.dirty = true; // replace the bad file even if nothing new is inserted
                    LoadOutcome::Discarded { reason }
                }
            },
        };
        Ok((cache, outcome))
    }

    /// The cache file (it may not exist yet).
    pub fn file(&self) -> &Path {
        &self.file
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The scores of `image` (a path from the scan of the root), if cached with this stamp.
    pub fn lookup(&self, image: &Path, stamp: &FileStamp) -> Option<&CachedScores> {
        self.entries.get(self.key(image)).filter(|e| e.stamp == *stamp).map(|e| &e.scores)
    }

    /// Record the model's probabilities for `image` as it is at `stamp`, replacing any entry.
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
        let entry = Entry { stamp, scores: CachedScores::from_probabilities(probabilities) };
        self.entries.insert(self.key(image).to_owned(), entry);
        self.dirty = true;
    }

    /// Keep only entries whose path relative to the root passes `keep` (e.g. the images the
    /// last full scan found), so deleted files do not accumulate.
    pub fn retain(&mut self, mut keep: impl FnMut(&Path) -> bool) {
        let before = self.entries.len();
        self.entries.retain(|k, _| keep(k));
        self.dirty |= self.entries.len() != before;
    }

    /// Write the cache if anything changed since it was opened or saved (atomically).
    pub fn save(&mut self) -> Result<(), CacheError> {
        if !self.dirty {
            return Ok(());
        }
        let dir = self.file.parent().unwrap_or(Path::new("."));
        let werr = |path: &Path| {
            let path = path.to_owned();
            move |source| CacheError::Write { path, source }
        };
        std::fs::create_dir_all(dir).map_err(werr(dir))?;
        let bytes = self.encode();
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let name = self.file.file_name().map_or_else(Default::default, |n| n.to_string_lossy().into_owned());
        let tmp = dir.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
        let written = std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, &self.file));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(werr(&self.file)(e));
        }
        self.dirty = false;
        Ok(())
    }

    /// Key of an image: its path relative to the root (as given), else the path itself.
    fn key<'a>(&self, image: &'a Path) -> &'a Path {
        image.strip_prefix(&self.root).unwrap_or(image)
    }

    fn encode(&self) -> Vec<u8> {
        let mut keys: Vec<(&PathBuf, Vec<u8>)> =
            self.entries.keys().filter_map(|k| path_bytes(k).map(|b| (k, b))).collect();
        keys.sort_by(|a, b| a.1.cmp(&b.1));
        let root = path_bytes(&self.root_id).unwrap_or_default();
        let per_entry = 28 + 8 * STORED_TOP_K + 4 * self.num_classes;
        let mut out = Vec::with_capacity(64 + root.len() + keys.len() * (per_entry + 64) + 32);
        out.extend_from_slice(MAGIC);
        put_u32(&mut out, FORMAT_VERSION);
        out.extend_from_slice(&self.model.0);
        put_u32(&mut out, self.num_classes as u32);
        put_u32(&mut out, STORED_TOP_K as u32);
        put_u32(&mut out, root.len() as u32);
        out.extend_from_slice(&root);
        put_u32(&mut out, keys.len() as u32);
        for (key, bytes) in keys {
            let e = &self.entries[key];
            put_u32(&mut out, bytes.len() as u32);
            out.extend_from_slice(&bytes);
            out.extend_from_slice(&e.stamp.size.to_le_bytes());
            out.extend_from_slice(&e.stamp.mtime_secs.to_le_bytes());
            put_u32(&mut out, e.stamp.mtime_nanos);
            for k in 0..STORED_TOP_K {
                // Models with fewer classes than the top-k pad with class u32::MAX.
                let c = e.scores.top.get(k).map_or((u32::MAX, 0.0), |c| (c.class as u32, c.probability));
                put_u32(&mut out, c.0);
                out.extend_from_slice(&c.1.to_le_bytes());
            }
            for p in &e.scores.probabilities {
                out.extend_from_slice(&p.to_le_bytes());
            }
        }
        let sum = Sha256::digest(&out);
        out.extend_from_slice(&sum);
        out
    }

    /// Parse and check a whole file; `Err` says why it is not trusted.
    fn decode(&self, bytes: &[u8]) -> Result<HashMap<PathBuf, Entry>, String> {
        if bytes.len() < MAGIC.len() + 32 || &bytes[..MAGIC.len()] != MAGIC {
            return Err("not a camscope scan cache (bad header)".into());
        }
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if Sha256::digest(body).as_slice() != sum {
            return Err("checksum mismatch (truncated or corrupt)".into());
        }
        let mut r = Reader { bytes: body, at: MAGIC.len() };
        let version = r.u32()?;
        if version != FORMAT_VERSION {
            return Err(format!("format version {version}, this camscope writes {FORMAT_VERSION}"));
        }
        if r.take(32)? != self.model.0 {
            return Err("written for another model".into());
        }
        let classes = r.u32()? as usize;
        if classes != self.num_classes {
            return Err(format!("written for {classes} classes, the model has {}", self.num_classes));
        }
        if r.u32()? as usize != STORED_TOP_K {
            return Err("written with another top-k".into());
        }
        let root_len = r.u32()? as usize;
        if Some(r.take(root_len)?) != path_bytes(&self.root_id).as_deref() {
            return Err("written for another dataset folder".into());
        }
        let count = r.u32()? as usize;
        let mut entries = HashMap::with_capacity(count.min(body.len() / (4 * classes + 28).max(1)));
        for _ in 0..count {
            let len = r.u32()? as usize;
            let key = path_from_bytes(r.take(len)?).ok_or("an entry's path is not valid here")?;
            let size = u64::from_le_bytes(r.array()?);
            let mtime_secs = i64::from_le_bytes(r.array()?);
            let mtime_nanos = r.u32()?;
            if mtime_nanos >= 1_000_000_000 {
                return Err("an entry's timestamp is invalid".into());
            }
            let mut top = Vec::with_capacity(STORED_TOP_K);
            for _ in 0..STORED_TOP_K {
                let class = r.u32()?;
                let probability = f32::from_le_bytes(r.array()?);
                if !(0.0..=1.0).contains(&probability) {
                    return Err("an entry holds a probability outside [0, 1]".into());
                }
                if class != u32::MAX {
                    if class as usize >= classes {
                        return Err("an entry names a class out of range".into());
                    }
                    top.push(ClassProb { class: class as usize, probability });
                }
            }
            let probabilities: Box<[f32]> = r
                .take(classes.checked_mul(4).ok_or("the class count is too large")?)?
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            if !probabilities.iter().all(|p| (0.0..=1.0).contains(p)) {
                return Err("an entry holds a probability outside [0, 1]".into());
            }
            let stamp = FileStamp { size, mtime_secs, mtime_nanos };
            entries.insert(key, Entry { stamp, scores: CachedScores { top, probabilities } });
        }
        if r.at != body.len() {
            return Err("trailing bytes after the last entry".into());
        }
        Ok(entries)
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Bounds-checked little-endian reading: a short file is an `Err`, never a panic.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or("truncated")?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("take returns N bytes"))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }
}

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

    #[test]
    fn round_trip_keeps_every_entry() {
        let f = fixture();
        let before = saved(&f);
        let (after, outcome) = open(&f);
        assert_eq!(outcome, LoadOutcome::Loaded { entries: 3 });
        assert_eq!(after.entries, before.entries);
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
    fn corrupt_or_truncated_files_are_discarded_then_rebuilt() {
        let f = fixture();
        let file = saved(&f).file().to_owned();
        let good = std::fs::read(&file).unwrap();
        let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
        for at in [0, 9, 20, 60, good.len() / 2, good.len() - 40, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x5a;
            cases.push((format!("byte {at} flipped"), bad));
        }
        for len in [0, 7, 40, good.len() / 2, good.len() - 1] {
            cases.push((format!("truncated to {len}"), good[..len].to_vec()));
        }
        let mut longer = good.clone();
        longer.push(0);
        cases.push(("one byte appended".into(), longer));
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
    fn a_file_with_a_valid_checksum_but_another_version_is_discarded() {
        let f = fixture();
        let file = saved(&f).file().to_owned();
        let mut bytes = std::fs::read(&file).unwrap();
        bytes.truncate(bytes.len() - 32);
        // Version 1 kept quantised probabilities: its entries must not be read as f32.
        bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        let sum = Sha256::digest(&bytes);
        bytes.extend_from_slice(&sum);
        std::fs::write(&file, &bytes).unwrap();
        let (_, outcome) = open(&f);
        assert_eq!(outcome, LoadOutcome::Discarded { reason: "format version 1, this camscope writes 2".into() });
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
