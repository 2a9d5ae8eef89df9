//! The images under a path, listed lazily so a 10,000-file folder opens at once.
//!
//! [`Scan`] is an iterator that reads one directory at a time, depth first: the first image
//! is available after reading only the directories on the way to it, and a worker thread can
//! own the iterator and send the TUI chunks ([`Scan::next_chunk`]) while it goes on.
//!
//! Order: the children of each directory are sorted by file name as raw bytes (so
//! case-sensitive, `B.png` before `a.png`), and a directory's images come at the position of
//! its name. That is exactly [`Path`]'s own ordering, so a listing is sorted like a
//! `Vec<PathBuf>` and stable from run to run whatever order the file system returns.
//!
//! Skipped, and counted in [`ScanStats`]: files without an image extension
//! ([`has_image_extension`]), names starting with a dot (hidden files and folders, not
//! entered), directories that cannot be read (reported, the walk goes on), broken symbolic
//! links, symbolic links to a directory that is already being walked (a loop), and FIFOs,
//! sockets and devices with an image's name (reading one would block). Other
//! links are followed, so a dataset made of linked class folders scans as expected.
//!
//! A root that is a file is listed as itself, whatever its extension: the user named it,
//! and the decoder will say clearly if it is not an image.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::imaging::has_image_extension;

/// Why a scan could not start, or (from [`Listing::non_empty`]) found nothing to show.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("{}: no such file or directory; check the path", path.display())]
    NotFound { path: PathBuf },
    #[error("{}: cannot read: {source}; check the permissions", path.display())]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("{}: no images found ({}); camscope reads PNG, JPEG, GIF, BMP, TIFF, WebP, PNM and ICO files", path.display(), stats.skipped_summary())]
    NoImages { path: PathBuf, stats: Box<ScanStats> },
}

/// A directory that could not be read during the walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub path: PathBuf,
    pub error: String,
}

/// What a scan has seen so far (complete once [`Scan::is_done`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Images listed.
    pub images: usize,
    /// Directories read, the root included.
    pub directories: usize,
    /// Files skipped because their extension is not an image's.
    pub non_images: usize,
    /// Hidden entries skipped (a hidden folder counts once, its contents are not read).
    pub hidden: usize,
    /// Directories that could not be read; their contents are missing from the listing.
    pub unreadable: Vec<Unreadable>,
    /// Links to a directory already being walked, not followed.
    pub symlink_loops: Vec<PathBuf>,
    /// Links whose target does not exist.
    pub broken_links: Vec<PathBuf>,
    /// FIFOs, sockets and devices named like images: reading one blocks or never ends, so
    /// they are never listed (and named, so the user can see why a file is missing).
    pub special_files: Vec<PathBuf>,
}

impl ScanStats {
    /// One line on what was left out, for the status bar and batch mode: `"3 non-image files, 1 hidden"`.
    pub fn skipped_summary(&self) -> String {
        let mut parts = Vec::new();
        let mut add = |n: usize, what: &str| {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        };
        add(self.non_images, "non-image files skipped");
        add(self.hidden, "hidden entries skipped");
        add(self.unreadable.len(), "unreadable folders");
        add(self.symlink_loops.len(), "symlink loops not followed");
        add(self.broken_links.len(), "broken links");
        add(self.special_files.len(), "pipes, sockets or devices named like images skipped");
        if parts.is_empty() { "nothing skipped".into() } else { parts.join(", ") }
    }
}

/// Identity of a directory, to recognise a link back into the walk.
#[cfg(unix)]
type DirId = (u64, u64);
#[cfg(not(unix))]
type DirId = ();

#[cfg(unix)]
fn dir_id(meta: &std::fs::Metadata) -> Option<DirId> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}
#[cfg(not(unix))]
fn dir_id(_: &std::fs::Metadata) -> Option<DirId> {
    None
}

#[derive(Debug)]
struct Entry {
    name: OsString,
    /// From the directory listing: no extra `stat` except for links.
    file_type: std::fs::FileType,
}

/// One directory being walked: its remaining children, sorted.
#[derive(Debug)]
struct Frame {
    dir: PathBuf,
    id: Option<DirId>,
    entries: std::vec::IntoIter<Entry>,
}

/// Lazy, sorted listing of the images under a path. See the module docs for the rules.
#[derive(Debug)]
pub struct Scan {
    root: PathBuf,
    stack: Vec<Frame>,
    single: Option<PathBuf>,
    stats: ScanStats,
}

impl Scan {
    /// Start listing `root` (a directory or one file). Reads the root directory only.
    pub fn new(root: &Path) -> Result<Self, ScanError> {
        let meta = std::fs::metadata(root).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => ScanError::NotFound { path: root.to_owned() },
            _ => ScanError::Unreadable { path: root.to_owned(), source },
        })?;
        let mut scan = Self { root: root.to_owned(), stack: Vec::new(), single: None, stats: ScanStats::default() };
        if meta.is_dir() {
            let entries =
                read_sorted(root).map_err(|source| ScanError::Unreadable { path: root.to_owned(), source })?;
            scan.stats.directories = 1;
            scan.stack.push(Frame { dir: root.to_owned(), id: dir_id(&meta), entries: entries.into_iter() });
        } else {
            scan.single = Some(root.to_owned());
        }
        Ok(scan)
    }

    /// The path the scan started from, as given.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Counts so far; final once [`is_done`](Self::is_done).
    pub fn stats(&self) -> &ScanStats {
        &self.stats
    }

    /// Whether every directory has been read and every image yielded.
    pub fn is_done(&self) -> bool {
        self.stack.is_empty() && self.single.is_none()
    }

    /// Up to `max` more images (fewer only at the end): the unit a worker sends the UI.
    pub fn next_chunk(&mut self, max: usize) -> Vec<PathBuf> {
        self.by_ref().take(max).collect()
    }

    /// Walk to the end.
    pub fn finish(mut self) -> Listing {
        let images = self.by_ref().collect();
        Listing { images, stats: self.stats }
    }

    /// Read `entry` of the top frame: `Some(image)` to yield, or `None` after descending or skipping.
    fn visit(&mut self, entry: Entry) -> Option<PathBuf> {
        let frame = self.stack.last().expect("visit runs with a frame");
        if entry.name.as_encoded_bytes().first() == Some(&b'.') {
            self.stats.hidden += 1;
            return None;
        }
        let path = frame.dir.join(&entry.name);
        let (is_dir, meta) = if entry.file_type.is_symlink() {
            match std::fs::metadata(&path) {
                Ok(meta) => (meta.is_dir(), Some(meta)),
                Err(_) => {
                    self.stats.broken_links.push(path);
                    return None;
                }
            }
        } else {
            (entry.file_type.is_dir(), None)
        };
        if !is_dir {
            if has_image_extension(&path) {
                let regular = match &meta {
                    Some(m) => m.is_file(),
                    None => entry.file_type.is_file(),
                };
                if !regular {
                    self.stats.special_files.push(path);
                    return None;
                }
                self.stats.images += 1;
                return Some(path);
            }
            self.stats.non_images += 1;
            return None;
        }
        let meta = match meta.map_or_else(|| std::fs::metadata(&path), Ok) {
            Ok(meta) => meta,
            Err(e) => {
                self.stats.unreadable.push(Unreadable { path, error: e.to_string() });
                return None;
            }
        };
        let id = dir_id(&meta);
        if entry.file_type.is_symlink() && (id.is_none() || self.stack.iter().any(|f| f.id == id)) {
            // Without directory identities (non-Unix), links to directories are not followed at all.
            self.stats.symlink_loops.push(path);
            return None;
        }
        match read_sorted(&path) {
            Ok(entries) => {
                self.stats.directories += 1;
                self.stack.push(Frame { dir: path, id, entries: entries.into_iter() });
            }
            Err(e) => self.stats.unreadable.push(Unreadable { path, error: e.to_string() }),
        }
        None
    }
}

impl Iterator for Scan {
    type Item = PathBuf;

    fn next(&mut self) -> Option<PathBuf> {
        if let Some(file) = self.single.take() {
            self.stats.images += 1;
            return Some(file);
        }
        loop {
            let frame = self.stack.last_mut()?;
            match frame.entries.next() {
                Some(entry) => {
                    if let Some(image) = self.visit(entry) {
                        return Some(image);
                    }
                }
                None => {
                    self.stack.pop();
                }
            }
        }
    }
}

/// The children of one directory, sorted by name bytes. An entry that cannot be read
/// mid-listing fails the whole directory: its listing would be silently incomplete.
fn read_sorted(dir: &Path) -> std::io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        entries.push(Entry { name: entry.file_name(), file_type: entry.file_type()? });
    }
    entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// A finished scan: every image, in order, and what was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub images: Vec<PathBuf>,
    pub stats: ScanStats,
}

impl Listing {
    /// List everything under `root` at once (the CLI's way; the TUI iterates a [`Scan`]).
    pub fn of(root: &Path) -> Result<Self, ScanError> {
        Ok(Scan::new(root)?.finish())
    }

    /// The listing, or [`ScanError::NoImages`] when it is empty: batch commands have nothing
    /// to do then, while the TUI shows an empty folder as such.
    pub fn non_empty(self, root: &Path) -> Result<Self, ScanError> {
        if self.images.is_empty() {
            Err(ScanError::NoImages { path: root.to_owned(), stats: Box::new(self.stats) })
        } else {
            Ok(self)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn touch(root: &Path, rel: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, b"x").unwrap();
    }

    fn rel(root: &Path, paths: &[PathBuf]) -> Vec<String> {
        paths.iter().map(|p| p.strip_prefix(root).unwrap().to_string_lossy().into_owned()).collect()
    }

    /// Nested folders, mixed case, hidden files and folders, non-images, a symlink loop, a
    /// link to a sibling folder, a broken link.
    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        for f in [
            "b.png",
            "B.JPG",
            "a/z.jpeg",
            "a/deep/er/x.webp",
            "a.png",
            "a/notes.txt",
            "a/.hidden.png",
            ".git/objects/img.png",
            "c/readme",
            "c/d/e.gif",
            "empty/.keep",
        ] {
            touch(r, f);
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(r.join("a"), r.join("a/deep/loop")).unwrap();
            std::os::unix::fs::symlink(r.join("c/d"), r.join("linked")).unwrap();
            std::os::unix::fs::symlink(r.join("gone"), r.join("broken.png")).unwrap();
            let fifo = std::ffi::CString::new(r.join("c/pipe.png").into_os_string().into_encoded_bytes()).unwrap();
            // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
            assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0, "mkfifo");
            std::os::unix::fs::symlink(r.join("c/pipe.png"), r.join("c/link-to-pipe.jpg")).unwrap();
        }
        t
    }

    #[test]
    fn lists_images_sorted_by_path_components() {
        let t = tree();
        let listing = Listing::of(t.path()).unwrap();
        let mut want = vec!["B.JPG", "a/deep/er/x.webp", "a/z.jpeg", "a.png", "b.png", "c/d/e.gif"];
        if cfg!(unix) {
            want.push("linked/e.gif");
        }
        assert_eq!(rel(t.path(), &listing.images), want);
        let mut sorted = listing.images.clone();
        sorted.sort();
        assert_eq!(sorted, listing.images, "the order is Path's order");
        let s = &listing.stats;
        assert_eq!(s.images, want.len());
        assert_eq!(s.non_images, 2, "notes.txt and readme");
        assert_eq!(s.hidden, 3, ".hidden.png, .git, .keep");
        if cfg!(unix) {
            assert_eq!(rel(t.path(), &s.symlink_loops), ["a/deep/loop"]);
            assert_eq!(rel(t.path(), &s.broken_links), ["broken.png"]);
            assert_eq!(
                rel(t.path(), &s.special_files),
                ["c/link-to-pipe.jpg", "c/pipe.png"],
                "never listed: reading blocks"
            );
            assert!(s.skipped_summary().contains("2 pipes, sockets or devices"), "{}", s.skipped_summary());
        }
        assert!(s.unreadable.is_empty());
        assert!(s.skipped_summary().contains("2 non-image files skipped"), "{}", s.skipped_summary());
    }

    #[test]
    fn first_image_comes_before_the_walk_reads_everything() {
        let t = tempfile::tempdir().unwrap();
        for i in 0..20 {
            touch(t.path(), &format!("d{i:02}/img.png"));
        }
        let mut scan = Scan::new(t.path()).unwrap();
        assert_eq!(scan.stats().directories, 1, "only the root is read up front");
        let first = scan.next().unwrap();
        assert_eq!(rel(t.path(), &[first]), ["d00/img.png"]);
        assert_eq!(scan.stats().directories, 2, "and the first folder for the first image");
        assert!(!scan.is_done());
        // Proof that the rest was not read yet: an image added now, in a folder not yet
        // walked, is listed.
        touch(t.path(), "d19/late.png");
        let rest = scan.next_chunk(100);
        assert_eq!(rest.len(), 20);
        assert!(rest.iter().any(|p| p.ends_with("d19/late.png")));
        assert!(scan.is_done());
        assert_eq!(scan.stats().directories, 21);
    }

    #[test]
    fn chunks_partition_the_listing() {
        let t = tree();
        let all = Listing::of(t.path()).unwrap().images;
        let mut scan = Scan::new(t.path()).unwrap();
        let mut chunks = Vec::new();
        loop {
            let c = scan.next_chunk(2);
            if c.is_empty() {
                break;
            }
            assert!(c.len() <= 2);
            chunks.extend(c);
        }
        assert_eq!(chunks, all);
    }

    #[test]
    fn a_file_root_lists_itself() {
        let t = tempfile::tempdir().unwrap();
        touch(t.path(), "notes.txt");
        let listing = Listing::of(&t.path().join("notes.txt")).unwrap();
        assert_eq!(listing.images, [t.path().join("notes.txt")]);
    }

    #[test]
    fn missing_path_and_empty_folder_are_clear() {
        let t = tempfile::tempdir().unwrap();
        let err = Scan::new(&t.path().join("nope")).unwrap_err();
        assert!(matches!(err, ScanError::NotFound { .. }));
        assert!(err.to_string().ends_with("nope: no such file or directory; check the path"), "{err}");
        touch(t.path(), "readme.md");
        let listing = Listing::of(t.path()).unwrap();
        assert!(listing.images.is_empty(), "empty is a result for the TUI");
        let err = listing.non_empty(t.path()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("no images found (1 non-image files skipped)"), "{msg}");
        assert_eq!(msg.lines().count(), 1);
    }

    #[test]
    fn folder_vanishing_mid_walk_is_reported_not_fatal() {
        let t = tempfile::tempdir().unwrap();
        touch(t.path(), "a/1.png");
        touch(t.path(), "b/2.png");
        touch(t.path(), "c/3.png");
        let mut scan = Scan::new(t.path()).unwrap();
        assert!(scan.next().unwrap().ends_with("a/1.png"));
        fs::remove_dir_all(t.path().join("b")).unwrap();
        let rest: Vec<PathBuf> = scan.by_ref().collect();
        assert_eq!(rel(t.path(), &rest), ["c/3.png"]);
        assert_eq!(scan.stats().unreadable.len(), 1);
        assert_eq!(scan.stats().unreadable[0].path, t.path().join("b"));
        assert!(scan.stats().skipped_summary().contains("1 unreadable folders"));
    }

    /// Runs as written for a normal user; root reads any folder, and then the walk must
    /// simply list everything.
    #[cfg(unix)]
    #[test]
    fn unreadable_folder_is_reported_not_fatal() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        touch(t.path(), "a/1.png");
        touch(t.path(), "locked/2.png");
        touch(t.path(), "z/3.png");
        let locked = t.path().join("locked");
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
        let readable = fs::read_dir(&locked).is_ok(); // root ignores permissions
        let listing = Listing::of(t.path()).unwrap();
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
        if readable {
            assert_eq!(listing.images.len(), 3);
        } else {
            assert_eq!(rel(t.path(), &listing.images), ["a/1.png", "z/3.png"]);
            assert_eq!(listing.stats.unreadable.len(), 1);
            assert_eq!(listing.stats.unreadable[0].path, locked);
        }
    }
}
