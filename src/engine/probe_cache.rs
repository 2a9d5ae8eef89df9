//! What measuring a model's shapes found, kept on disk so that the next start of the same
//! model skips the two probe runs.
//!
//! Why: the probe (a profiling session and two forward runs, see [`super::probe`]) is most of
//! a model's load time (0.3 s of the bundled model's 0.5 s here, seconds on a ViT-B/16), and
//! its answer depends only on the model file and the input size. A record is keyed by a hash
//! of the model file's bytes (xxHash3-128: the hash of a 330 MB file costs 30 ms where
//! SHA-256 costs a second), the input dims and camscope's version, so an edited model, a
//! different card or another camscope never reads a stale record.
//!
//! The cache is an optimisation only: a missing, unreadable, corrupt or foreign record is
//! ignored (and replaced), and a folder that cannot be written (read-only, full) costs only
//! the speed-up, said once in [`CacheUse`]. Delete the folder at any time.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The environment variable naming the cache folder; `off` disables the shape cache.
pub const CACHE_ENV: &str = "CAMSCOPE_CACHE_DIR";

/// What the probe measured, as [`super::probe::probe_shapes`] merges it into an analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeRecord {
    /// Dims of every node output at batch 1.
    pub at1: Vec<(String, Vec<i64>)>,
    /// The same at batch 2, when the model ran at batch 2.
    pub at2: Option<Vec<(String, Vec<i64>)>>,
    /// Graph-computed integer constants.
    pub ints: HashMap<String, Vec<i64>>,
    /// Element types.
    pub types: HashMap<String, i32>,
}

/// The file a record lives in, with the identity written inside it (checked on reading: a
/// record copied or renamed by hand is not trusted by its name alone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeKey {
    pub model_hash: u128,
    pub model_len: u64,
    pub input_dims: Vec<usize>,
    pub fixed_batch: bool,
}

impl ProbeKey {
    fn id(&self) -> String {
        let dims: Vec<String> = self.input_dims.iter().map(usize::to_string).collect();
        format!(
            "{:032x}-{}-{}{}-v{}",
            self.model_hash,
            self.model_len,
            dims.join("x"),
            if self.fixed_batch { "-fixed" } else { "" },
            env!("CARGO_PKG_VERSION")
        )
    }
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    key: String,
    record: ProbeRecord,
}

/// How loading used the cache, for the status line and `--trace`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CacheUse {
    /// The shapes came from the cache.
    Hit,
    /// Measured, and stored for next time.
    Stored,
    /// No cache (disabled, or no home folder to put it in).
    #[default]
    Off,
    /// Measured; the cache could not be used (the reason, one line).
    Unavailable(String),
}

impl std::fmt::Display for CacheUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Hit => f.write_str("shapes from the cache"),
            Self::Stored => f.write_str("shapes measured and cached"),
            Self::Off => f.write_str("shape cache off"),
            Self::Unavailable(why) => write!(f, "shape cache unavailable ({why})"),
        }
    }
}

/// The cache folder: camscope's one (the scan caches' too, see
/// [`crate::dataset::cache::default_dir`]: `$CAMSCOPE_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/camscope`, else `~/.cache/camscope`); `None` when `CAMSCOPE_CACHE_DIR=off`
/// or there is no home folder.
pub fn cache_dir() -> Option<PathBuf> {
    if std::env::var_os(CACHE_ENV).is_some_and(|v| v == "off") {
        return None;
    }
    crate::dataset::cache::default_dir().ok()
}

fn file(dir: &Path, key: &ProbeKey) -> PathBuf {
    dir.join("shapes").join(format!("{}.json", key.id()))
}

/// The record for `key`, if one is stored and intact.
pub fn load(dir: &Path, key: &ProbeKey) -> Option<ProbeRecord> {
    let bytes = crate::fsutil::read_regular(&file(dir, key)).ok()?;
    let disk: OnDisk = serde_json::from_slice(&bytes).ok()?;
    (disk.key == key.id() && !disk.record.at1.is_empty()).then_some(disk.record)
}

/// Store `record` for `key`: written to a temporary file and renamed, so a reader never sees
/// half a record and two processes storing the same key at once both leave a whole one.
pub fn store(dir: &Path, key: &ProbeKey, record: &ProbeRecord) -> std::io::Result<()> {
    let path = file(dir, key);
    let parent = path.parent().expect("a file in the shapes folder");
    std::fs::create_dir_all(parent)?;
    let json = serde_json::to_vec(&OnDisk { key: key.id(), record: record.clone() }).map_err(std::io::Error::other)?;
    let tmp = parent.join(format!(".{}.{}.tmp", key.id(), std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    prune(parent, MAX_RECORDS);
    written
}

/// Records kept: a user trying models one after another must not fill the disk (a record is
/// 60 KB for the bundled model, a few hundred KB for a ViT).
pub const MAX_RECORDS: usize = 200;

/// Delete the least recently written records beyond `keep` (best effort: a record another
/// process deletes or rewrites meanwhile is simply skipped).
fn prune(folder: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(folder) else { return };
    let mut records: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if records.len() <= keep {
        return;
    }
    records.sort();
    for (_, path) in &records[..records.len() - keep] {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(hash: u128) -> ProbeKey {
        ProbeKey { model_hash: hash, model_len: 10, input_dims: vec![1, 3, 8, 8], fixed_batch: false }
    }

    fn record() -> ProbeRecord {
        ProbeRecord {
            at1: vec![("a".into(), vec![1, 8]), ("s".into(), vec![])],
            at2: Some(vec![("a".into(), vec![2, 8]), ("s".into(), vec![])]),
            ints: HashMap::from([("s".to_owned(), vec![4, 2])]),
            types: HashMap::from([("a".to_owned(), 1), ("s".to_owned(), 7)]),
        }
    }

    #[test]
    fn a_record_reads_back_only_under_its_own_key_and_corruption_is_a_miss() {
        let dir = std::env::temp_dir().join(format!("camscope-probe-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(load(&dir, &key(1)), None);
        store(&dir, &key(1), &record()).unwrap();
        assert_eq!(load(&dir, &key(1)), Some(record()));
        assert_eq!(load(&dir, &key(2)), None);
        let other_size = ProbeKey { input_dims: vec![1, 3, 9, 9], ..key(1) };
        assert_eq!(load(&dir, &other_size), None);
        // A record renamed by hand to another key is not trusted by its name.
        std::fs::copy(file(&dir, &key(1)), file(&dir, &key(3))).unwrap();
        assert_eq!(load(&dir, &key(3)), None);
        // Truncated or garbage: a miss, and storing again repairs it.
        let f = file(&dir, &key(1));
        let bytes = std::fs::read(&f).unwrap();
        std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
        assert_eq!(load(&dir, &key(1)), None);
        std::fs::write(&f, b"\x00\xffnot json").unwrap();
        assert_eq!(load(&dir, &key(1)), None);
        store(&dir, &key(1), &record()).unwrap();
        assert_eq!(load(&dir, &key(1)), Some(record()));
        // No temporary files are left behind.
        let names: Vec<String> = std::fs::read_dir(dir.join("shapes"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| n.ends_with(".json") && !n.starts_with('.')), "{names:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_the_newest_records_are_kept() {
        let dir = std::env::temp_dir().join(format!("camscope-probe-cache-prune-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let t0 = std::time::SystemTime::now() - std::time::Duration::from_secs(100);
        for i in 0..6u64 {
            let p = dir.join(format!("{i}.json"));
            std::fs::write(&p, b"{}").unwrap();
            let f = std::fs::File::options().write(true).open(&p).unwrap();
            f.set_modified(t0 + std::time::Duration::from_secs(i)).unwrap();
        }
        std::fs::write(dir.join("notes.txt"), b"not a record").unwrap();
        prune(&dir, 4);
        let mut left: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        assert_eq!(left, ["2.json", "3.json", "4.json", "5.json", "notes.txt"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_folder_that_cannot_hold_the_cache_is_an_error_not_a_panic() {
        let dir = std::env::temp_dir().join(format!("camscope-probe-cache-file-{}", std::process::id()));
        std::fs::write(&dir, b"a file where the folder should be").unwrap();
        assert!(store(&dir, &key(1), &record()).is_err());
        assert_eq!(load(&dir, &key(1)), None);
        let _ = std::fs::remove_file(&dir);
    }
}
