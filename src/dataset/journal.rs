//! Crash-safe output folders for `batch` and `triage`: an append-only journal of what is
//! finished, and outputs that appear whole or not at all.
//!
//! A run can end at any instruction (Ctrl-C, `kill -9`, a full disk, a job's time limit), so
//! nothing here relies on running to the end:
//!
//! - Every output is written under a short temporary name in `OUTDIR/.camscope-tmp` (same
//!   file system, so the rename is atomic) and renamed into place: a final name never holds
//!   half a PNG. The temporary names are short whatever the output's name, so a legal
//!   240-byte name does not push them past the 255-byte limit. Leftovers of a killed run are
//!   removed by the next one.
//! - Before an output is renamed into place, the journal records a *claim* on its name. The
//!   claims are how a rerun tells its own files (replace them: a stale overlay of a changed
//!   image, or one written just before the kill) from files it did not write (never
//!   touched: a fresh `name-1.png` is used instead). Without them, a rerun after an
//!   interruption wrote a `-1` copy beside every overlay it had already made.
//! - After all of an item's outputs are in place, the journal records the item as *done*,
//!   with its report record. A rerun reuses done items of the same configuration and redoes
//!   the rest, so its report equals an uninterrupted run's.
//!
//! The journal is JSON lines, one `write` per line on an append-mode file: a kill leaves at
//! most one partial last line, which the reader skips (and the next run ends with a newline
//! before appending). A configuration line starts a new generation: records of another
//! configuration (another model, layer, method, ...) are not reused, but its claims still
//! say which files are camscope's. A lock file keeps two runs out of one folder.
//!
//! The journal is also where a run's records live while it runs: memory holds only an index
//! (a 128-bit hash of each done key, with where its line starts, and a hash of each claimed
//! name), and a record is read back from the file when asked for. A batch of a million images
//! journals ~1 GB of records; held parsed, they took more memory than the rest of the run.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Why an output folder could not be used or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{}: cannot use the output folder: {source}; check its permissions and free space", path.display())]
    Folder { path: PathBuf, source: std::io::Error },
    #[error("{}: another camscope run is writing to this output folder; wait for it to finish or choose another --out", path.display())]
    Busy { path: PathBuf },
    #[error("{}: cannot write: {source}; free some disk space (or fix the permissions) and run the same command again: it resumes where it stopped", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{}: is {what}, not a regular file; camscope only replaces regular files, so move it away or choose another --out", path.display())]
    NotRegular { path: PathBuf, what: &'static str },
    #[error("{}: cannot read back a record: {source}; run the same command again (a record that cannot be read is redone)", path.display())]
    Read { path: PathBuf, source: std::io::Error },
}

/// A path relative to the output folder, exactly (names need not be UTF-8).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
enum RelPath {
    Text(String),
    Bytes(Vec<u8>),
}

impl RelPath {
    fn of(p: &Path) -> Self {
        match p.to_str() {
            Some(s) => RelPath::Text(s.to_owned()),
            None => RelPath::Bytes(p.as_os_str().as_encoded_bytes().to_vec()),
        }
    }

    fn path(&self) -> Option<PathBuf> {
        match self {
            RelPath::Text(s) => Some(PathBuf::from(s)),
            #[cfg(unix)]
            RelPath::Bytes(b) => Some(PathBuf::from(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b))),
            #[cfg(not(unix))]
            RelPath::Bytes(_) => None,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Line<R> {
    Config(serde_json::Value),
    Claim(RelPath),
    Done { key: String, record: R },
}

/// The index key of a done item: 64 bits of its xxHash3-128. A collision (odds of 3e-8 at a
/// million keys) only makes the record read back be another key's, and that item is redone.
fn key_hash(key: &str) -> u64 {
    twox_hash::XxHash3_128::oneshot(key.as_bytes()) as u64
}

/// The index key of a claimed name: its xxHash3-128, wider than [`key_hash`] because a
/// collision here would take a user's file for camscope's own (odds of 2^-88 at a billion).
fn path_hash(p: &Path) -> u128 {
    twox_hash::XxHash3_128::oneshot(p.as_os_str().as_encoded_bytes())
}

/// Where a done line is in the journal file, packed into 8 bytes (at a million items the
/// index is most of what a batch holds): its offset in the low 40 bits (1 TB of journal),
/// its length in the high 24 (a record up to 16 MB; a longer one is not indexed, so redone).
#[derive(Clone, Copy)]
struct At(u64);

impl At {
    fn new(offset: u64, len: usize) -> Option<Self> {
        (offset < 1 << 40 && len < 1 << 24).then_some(Self(offset | (len as u64) << 40))
    }

    fn offset(self) -> u64 {
        self.0 & ((1 << 40) - 1)
    }

    fn len(self) -> usize {
        (self.0 >> 40) as usize
    }
}

/// An output folder being written by one run (see the module documentation).
pub struct Journal<R> {
    out: PathBuf,
    path: PathBuf,
    file: File,
    /// The journal's length: where the next line goes.
    end: u64,
    _lock: File,
    tmp: PathBuf,
    owned: HashSet<u128>,
    done: HashMap<u64, At>,
    next_tmp: Cell<u64>,
    record: std::marker::PhantomData<R>,
}

/// Temporary files live here, inside the output folder (same file system: renames are atomic).
pub const TMP_DIR: &str = ".camscope-tmp";

impl<R: Serialize + DeserializeOwned> Journal<R> {
    /// Open (or start) the journal `OUTDIR/.camscope-NAME.journal` for a run with `config`.
    /// Items done under another configuration are forgotten; files claimed under any are
    /// still known as camscope's.
    pub fn open(out: &Path, name: &str, config: &impl Serialize) -> Result<Self, JournalError> {
        let folder_err = |source| JournalError::Folder { path: out.to_owned(), source };
        let config = serde_json::to_value(config).map_err(|e| folder_err(std::io::Error::other(e)))?;
        std::fs::create_dir_all(out).map_err(folder_err)?;
        let lock_path = out.join(format!(".camscope-{name}.lock"));
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(folder_err)?;
        try_lock(&lock).map_err(|e| match e.kind() {
            ErrorKind::WouldBlock => JournalError::Busy { path: out.to_owned() },
            _ => folder_err(e),
        })?;
        let tmp = out.join(TMP_DIR);
        // Leftovers of a killed run: every file in here is camscope's, written by a run that
        // held the lock we hold now.
        if let Ok(entries) = std::fs::read_dir(&tmp) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        std::fs::create_dir_all(&tmp).map_err(folder_err)?;
        let path = out.join(format!(".camscope-{name}.journal"));
        let (owned, done, end, ends_with_newline, current) = match File::open(&path) {
            Ok(f) => read_index(f, &config).map_err(folder_err)?,
            Err(e) if e.kind() == ErrorKind::NotFound => Default::default(),
            Err(e) => return Err(folder_err(e)),
        };
        let file = OpenOptions::new().create(true).append(true).read(true).open(&path).map_err(folder_err)?;
        let mut journal = Journal {
            out: out.to_owned(),
            path,
            file,
            end,
            _lock: lock,
            tmp,
            owned,
            done,
            next_tmp: Cell::new(0),
            record: std::marker::PhantomData,
        };
        if end > 0 && !ends_with_newline {
            journal.append_raw(b"\n")?;
        }
        if !current {
            journal.append(&Line::<R>::Config(config))?;
        }
        Ok(journal)
    }

    /// The record of an item done under this configuration, if any, read back from the
    /// journal. A record this camscope cannot parse (another version's) counts as not done.
    pub fn done(&self, key: &str) -> Result<Option<R>, JournalError> {
        let Some(&at) = self.done.get(&key_hash(key)) else { return Ok(None) };
        let mut line = vec![0; at.len()];
        read_at(&self.file, &mut line, at.offset())
            .map_err(|source| JournalError::Read { path: self.path.clone(), source })?;
        Ok(match serde_json::from_slice::<Line<R>>(&line) {
            Ok(Line::Done { key: k, record }) if k == key => Some(record),
            _ => None,
        })
    }

    /// Whether a file (relative to the output folder) was written by camscope into this folder.
    pub fn owns(&self, rel: &Path) -> bool {
        self.owned.contains(&path_hash(rel))
    }

    /// Write `bytes` as the output `rel` (relative to the output folder), atomically, and
    /// return the name actually used: `rel` when it is free, camscope's own, or `replace` is
    /// set; else the first free or own `stem-N.ext`, so a file camscope did not write is never
    /// replaced. Never replaces anything but a regular file.
    pub fn write_output(&mut self, rel: &Path, bytes: &[u8], replace: bool) -> Result<PathBuf, JournalError> {
        let (chosen, dest) = self.claim(rel, replace)?;
        self.place(&dest, |tmp| write_synced(tmp, bytes))
            .map_err(|source| JournalError::Write { path: dest.clone(), source })?;
        Ok(chosen)
    }

    /// Put the existing file `src` in place as the output `rel`, like [`Self::write_output`]
    /// (same choice of name, claim and atomic rename), but as a hard link when `src` is on the
    /// same file system: `merge` gathers every shard's overlays, and copying a million PNGs
    /// would double the disk used for nothing. Falls back to a copy across file systems.
    pub fn link_output(&mut self, rel: &Path, src: &Path, replace: bool) -> Result<PathBuf, JournalError> {
        let (chosen, dest) = self.claim(rel, replace)?;
        // A new name is linked in place directly: a link to a whole file is never half
        // written, and a merge of many shards saves a rename per overlay. A name to replace
        // goes through a temporary link and a rename, so it never disappears in between.
        if dest.symlink_metadata().is_err() && std::fs::hard_link(src, &dest).is_ok() {
            return Ok(chosen);
        }
        self.place(&dest, |tmp| std::fs::hard_link(src, tmp).or_else(|_| std::fs::copy(src, tmp).map(|_| ())))
            .map_err(|source| JournalError::Write { path: dest.clone(), source })?;
        Ok(chosen)
    }

    /// The name an output `rel` takes (see [`Self::write_output`]), claimed in the journal
    /// before anything is written, with its folder created: `(relative name, full path)`.
    fn claim(&mut self, rel: &Path, replace: bool) -> Result<(PathBuf, PathBuf), JournalError> {
        let chosen = candidates(rel)
            .take(10_000)
            .find(|c| replace || self.owns(c) || self.out.join(c).symlink_metadata().is_err())
            .unwrap_or_else(|| rel.to_owned());
        let dest = self.out.join(&chosen);
        if let Some(what) = crate::fsutil::non_regular(&dest) {
            return Err(JournalError::NotRegular { path: dest, what });
        }
        if !self.owns(&chosen) {
            self.append(&Line::<R>::Claim(RelPath::of(&chosen)))?;
            self.owned.insert(path_hash(&chosen));
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|source| JournalError::Write { path: dest.clone(), source })?;
        }
        Ok((chosen, dest))
    }

    /// Make `dest` appear whole: `fill` writes a fresh temporary file in [`TMP_DIR`], which is
    /// then renamed over `dest`; on failure the temporary file is removed.
    fn place(&self, dest: &Path, fill: impl FnOnce(&Path) -> std::io::Result<()>) -> std::io::Result<()> {
        let n = self.next_tmp.get();
        self.next_tmp.set(n + 1);
        let tmp = self.tmp.join(format!("{}-{n}.tmp", std::process::id()));
        let result = fill(&tmp).and_then(|()| std::fs::rename(&tmp, dest));
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Record an item as done (after all of its outputs are in place).
    pub fn finish(&mut self, key: &str, record: &R) -> Result<(), JournalError> {
        let offset = self.end;
        let len = self.append(&Line::Done { key: key.to_owned(), record })?;
        match At::new(offset, len) {
            Some(at) => self.done.insert(key_hash(key), at),
            None => self.done.remove(&key_hash(key)),
        };
        Ok(())
    }

    /// Write a whole file (a report) atomically, like an output but without a claim: reports
    /// have fixed names and are always camscope's.
    pub fn write_report(&self, name: &str, bytes: &[u8]) -> Result<(), JournalError> {
        let dest = self.out.join(name);
        if let Err(e) = self.place(&dest, |tmp| write_synced(tmp, bytes)) {
            // A folder in the report's place (a user's `mkdir report.parquet`) is no full disk:
            // say what is in the way instead of advising free space.
            if dest.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                return Err(JournalError::NotRegular { path: dest, what: "a folder" });
            }
            return Err(JournalError::Write { path: dest, source: e });
        }
        Ok(())
    }

    /// Write a report atomically, like [`Self::write_report`], from `fill`, which streams it
    /// into a buffered temporary file: a report of a million rows need not sit in memory.
    /// `fill` may read records back with [`Self::done`] meanwhile.
    pub fn write_report_with(
        &self,
        name: &str,
        fill: impl FnOnce(&mut std::io::BufWriter<File>) -> std::io::Result<()>,
    ) -> Result<(), JournalError> {
        let dest = self.out.join(name);
        let written = self.place(&dest, |tmp| {
            let mut w =
                std::io::BufWriter::with_capacity(1 << 20, OpenOptions::new().write(true).create_new(true).open(tmp)?);
            fill(&mut w)?;
            w.into_inner().map_err(|e| e.into_error())?.sync_data()
        });
        if let Err(e) = written {
            if dest.symlink_metadata().is_ok_and(|m| m.is_dir()) {
                return Err(JournalError::NotRegular { path: dest, what: "a folder" });
            }
            return Err(JournalError::Write { path: dest, source: e });
        }
        Ok(())
    }

    /// The output folder, so callers can name its files in their messages.
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// Append one line; its length without the newline.
    fn append<T: Serialize>(&mut self, line: &T) -> Result<usize, JournalError> {
        let mut bytes = serde_json::to_vec(line)
            .map_err(|e| JournalError::Write { path: self.path.clone(), source: std::io::Error::other(e) })?;
        let len = bytes.len();
        bytes.push(b'\n');
        self.append_raw(&bytes)?;
        Ok(len)
    }

    fn append_raw(&mut self, bytes: &[u8]) -> Result<(), JournalError> {
        // One write per line: on an append-mode file a kill cannot interleave two lines.
        self.file.write_all(bytes).map_err(|source| JournalError::Write { path: self.path.clone(), source })?;
        self.end += bytes.len() as u64;
        Ok(())
    }
}

/// What [`Journal::open`] keeps of an existing journal: the claimed names, where each item
/// done under `config` has its line, the file's length, whether it ends with a newline, and
/// whether `config` is the current generation. Read a line at a time: only the index is kept.
#[allow(clippy::type_complexity)]
fn read_index(
    file: File,
    config: &serde_json::Value,
) -> std::io::Result<(HashSet<u128>, HashMap<u64, At>, u64, bool, bool)> {
    /// A line with its record skipped, not parsed into one: the key is all the index needs.
    #[derive(Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Peek {
        Config(serde_json::Value),
        Claim(RelPath),
        Done { key: String },
    }
    let mut r = BufReader::with_capacity(1 << 20, file);
    let (mut owned, mut done) = (HashSet::new(), HashMap::new());
    let (mut offset, mut current, mut newline) = (0u64, false, true);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = r.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        newline = line.ends_with(b"\n");
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        // A partial last line (killed mid-write) or a line of another version: skipped.
        match serde_json::from_slice::<Peek>(text) {
            Ok(Peek::Config(c)) => {
                current = c == *config;
                done.clear();
            }
            Ok(Peek::Claim(p)) => {
                if let Some(p) = p.path() {
                    owned.insert(path_hash(&p));
                }
            }
            Ok(Peek::Done { key }) if current => {
                // A later line replaces an earlier one; one too long to index drops it.
                match At::new(offset, text.len()) {
                    Some(at) => done.insert(key_hash(&key), at),
                    None => done.remove(&key_hash(&key)),
                };
            }
            _ => {}
        }
        offset += n as u64;
    }
    Ok((owned, done, offset, newline, current))
}

/// Fill `buf` from `file` at `offset` (positioned reads: the append handle's own position
/// is not moved, and appends always go to the end).
#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(not(unix))]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = file.try_clone()?;
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(buf)
}

/// An exclusive advisory lock on `file`, held until it is closed (the kernel drops it when the
/// process dies, so a killed run never leaves the folder locked). `File::try_lock` needs Rust
/// 1.89; camscope builds with 1.85.
#[cfg(unix)]
fn try_lock(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor we own; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(unix))]
fn try_lock(_: &File) -> std::io::Result<()> {
    Ok(())
}

/// Create `path` (it must not exist) holding `bytes`, flushed to disk before it is renamed.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = OpenOptions::new().write(true).create_new(true).open(path)?;
    f.write_all(bytes)?;
    f.sync_data()
}

/// `rel`, then `stem-1.ext`, `stem-2.ext`, ... in the same folder.
fn candidates(rel: &Path) -> impl Iterator<Item = PathBuf> + '_ {
    let stem = rel.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let ext = rel.extension().map(|e| e.to_string_lossy().into_owned());
    std::iter::once(rel.to_owned()).chain((1..).map(move |i| {
        rel.with_file_name(match &ext {
            Some(ext) => format!("{stem}-{i}.{ext}"),
            None => format!("{stem}-{i}"),
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Rec {
        n: u32,
    }

    #[test]
    fn done_items_and_claims_survive_a_reopen_and_a_new_config_keeps_only_claims() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path();
        {
            let mut j = Journal::<Rec>::open(out, "batch", &"config-a").unwrap();
            let used = j.write_output(Path::new("a/x.png"), b"one", false).unwrap();
            assert_eq!(used, Path::new("a/x.png"));
            j.finish("x", &Rec { n: 1 }).unwrap();
            // Claimed but not finished: as if killed between the rename and the done line.
            j.write_output(Path::new("a/y.png"), b"two", false).unwrap();
        }
        std::fs::write(out.join("a/z.png"), b"the user's").unwrap();
        let mut j = Journal::<Rec>::open(out, "batch", &"config-a").unwrap();
        assert_eq!(j.done("x").unwrap(), Some(Rec { n: 1 }));
        assert_eq!(j.done("y").unwrap(), None);
        assert!(j.owns(Path::new("a/y.png")));
        // Its own file is replaced in place; a file it did not write is not.
        assert_eq!(j.write_output(Path::new("a/y.png"), b"again", false).unwrap(), Path::new("a/y.png"));
        assert_eq!(std::fs::read(out.join("a/y.png")).unwrap(), b"again");
        assert_eq!(j.write_output(Path::new("a/z.png"), b"ours", false).unwrap(), Path::new("a/z-1.png"));
        assert_eq!(std::fs::read(out.join("a/z.png")).unwrap(), b"the user's");
        drop(j);
        let j = Journal::<Rec>::open(out, "batch", &"config-b").unwrap();
        assert_eq!(j.done("x").unwrap(), None, "another configuration redoes the work");
        assert!(j.owns(Path::new("a/x.png")) && j.owns(Path::new("a/z-1.png")));
        assert!(std::fs::read_dir(out.join(TMP_DIR)).unwrap().next().is_none(), "no temporary file left");
    }

    #[test]
    fn linked_outputs_are_claimed_like_written_ones_and_never_replace_a_users_file() {
        let t = tempfile::tempdir().unwrap();
        let (src, out) = (t.path().join("src.png"), t.path().join("out"));
        std::fs::write(&src, b"overlay").unwrap();
        let mut j = Journal::<Rec>::open(&out, "batch", &1).unwrap();
        assert_eq!(j.link_output(Path::new("a/x.png"), &src, false).unwrap(), Path::new("a/x.png"));
        assert_eq!(std::fs::read(out.join("a/x.png")).unwrap(), b"overlay");
        // Its own file is replaced in place (through a temporary link), a user's file is not.
        assert_eq!(j.link_output(Path::new("a/x.png"), &src, false).unwrap(), Path::new("a/x.png"));
        std::fs::write(out.join("a/y.png"), b"the user's").unwrap();
        assert_eq!(j.link_output(Path::new("a/y.png"), &src, false).unwrap(), Path::new("a/y-1.png"));
        assert_eq!(std::fs::read(out.join("a/y.png")).unwrap(), b"the user's");
        drop(j);
        let j = Journal::<Rec>::open(&out, "batch", &1).unwrap();
        assert!(j.owns(Path::new("a/x.png")) && j.owns(Path::new("a/y-1.png")) && !j.owns(Path::new("a/y.png")));
    }

    #[test]
    fn a_partial_last_line_is_skipped_and_the_next_line_is_not_glued_to_it() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path();
        {
            let mut j = Journal::<Rec>::open(out, "batch", &1).unwrap();
            j.finish("a", &Rec { n: 1 }).unwrap();
        }
        let path = out.join(".camscope-batch.journal");
        let mut text = std::fs::read(&path).unwrap();
        text.extend_from_slice(br#"{"done":{"key":"b","rec"#);
        std::fs::write(&path, &text).unwrap();
        {
            let mut j = Journal::<Rec>::open(out, "batch", &1).unwrap();
            assert_eq!(j.done("a").unwrap(), Some(Rec { n: 1 }));
            assert_eq!(j.done("b").unwrap(), None);
            j.finish("c", &Rec { n: 3 }).unwrap();
        }
        let j = Journal::<Rec>::open(out, "batch", &1).unwrap();
        assert_eq!(j.done("c").unwrap(), Some(Rec { n: 3 }));
    }

    #[test]
    fn records_are_read_back_from_the_file_the_latest_wins_and_another_versions_is_not_done() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path();
        {
            let mut j = Journal::<Rec>::open(out, "batch", &1).unwrap();
            j.finish("a", &Rec { n: 1 }).unwrap();
            j.finish("b", &Rec { n: 2 }).unwrap();
            j.finish("a", &Rec { n: 3 }).unwrap();
            assert_eq!((j.done("a").unwrap(), j.done("b").unwrap()), (Some(Rec { n: 3 }), Some(Rec { n: 2 })));
        }
        let path = out.join(".camscope-batch.journal");
        let mut text = std::fs::read(&path).unwrap();
        text.extend_from_slice(b"{\"done\":{\"key\":\"c\",\"record\":{\"m\":1}}}\n");
        std::fs::write(&path, &text).unwrap();
        let j = Journal::<Rec>::open(out, "batch", &1).unwrap();
        assert_eq!(j.done("a").unwrap(), Some(Rec { n: 3 }));
        assert_eq!(j.done("b").unwrap(), Some(Rec { n: 2 }));
        assert_eq!(j.done("c").unwrap(), None, "a record of another version is redone");
    }

    #[test]
    fn a_second_run_into_the_same_folder_is_refused_and_special_files_are_not_replaced() {
        let t = tempfile::tempdir().unwrap();
        let mut j = Journal::<Rec>::open(t.path(), "batch", &1).unwrap();
        let err = Journal::<Rec>::open(t.path(), "batch", &1).err().expect("locked");
        assert!(matches!(err, JournalError::Busy { .. }), "{err}");
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/dev/null", t.path().join("l.png")).unwrap();
            let err = j.write_output(Path::new("l.png"), b"x", true).unwrap_err();
            assert!(err.to_string().contains("symbolic link"), "{err}");
        }
        // A 240-byte name fits: the temporary name does not grow with it.
        let long = PathBuf::from(format!("{}.png", "n".repeat(236)));
        assert_eq!(j.write_output(&long, b"x", false).unwrap(), long);
    }
}
