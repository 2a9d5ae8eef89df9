//! A listing's paths, packed: what `triage` holds for every image of a large dataset.
//!
//! A `Vec<PathBuf>` costs a heap block per path (~65 bytes of a path under /data rounded to
//! 80 by the allocator, plus 24 of `PathBuf`): 104 MB at a million images, the largest part of
//! triage's memory once its results were made compact. [`PathList`] keeps the paths relative to
//! the root in one buffer with an end offset each (~35 bytes an image), and makes a path when
//! asked for one, which costs nothing next to the stat, cache lookup or decode it is asked for.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// Image paths by index, as [`crate::triage::scan`] reads them: a slice of paths (the
/// inspector's listing) or a [`PathList`].
pub trait ImagePaths {
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The path of image `i` (panics when out of range, like indexing).
    fn path(&self, i: usize) -> Cow<'_, Path>;
}

impl ImagePaths for [PathBuf] {
    fn len(&self) -> usize {
        <[PathBuf]>::len(self)
    }

    fn path(&self, i: usize) -> Cow<'_, Path> {
        Cow::Borrowed(&self[i])
    }
}

impl ImagePaths for Vec<PathBuf> {
    fn len(&self) -> usize {
        Vec::len(self)
    }

    fn path(&self, i: usize) -> Cow<'_, Path> {
        Cow::Borrowed(&self[i])
    }
}

/// Paths under one root, packed (see the module docs). A path not under the root (the root
/// itself, when it is a file) is kept whole.
#[derive(Debug, Clone)]
pub struct PathList {
    root: PathBuf,
    bytes: Vec<u8>,
    /// End of each path in `bytes`; the top bit marks a path kept whole.
    ends: Vec<u64>,
}

const WHOLE: u64 = 1 << 63;

impl PathList {
    pub fn new(root: &Path) -> Self {
        Self { root: root.to_owned(), bytes: Vec::new(), ends: Vec::new() }
    }

    pub fn push(&mut self, path: &Path) {
        let (rel, flag) = match path.strip_prefix(&self.root) {
            Ok(rel) if !rel.as_os_str().is_empty() => (rel, 0),
            _ => (path, WHOLE),
        };
        self.bytes.extend_from_slice(rel.as_os_str().as_encoded_bytes());
        self.ends.push(self.bytes.len() as u64 | flag);
    }

    /// Keep the paths `keep` accepts, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&Path) -> bool) {
        let mut kept = Self::new(&self.root);
        for i in 0..self.ends.len() {
            let p = self.path(i);
            if keep(&p) {
                kept.push(&p);
            }
        }
        kept.bytes.shrink_to_fit();
        kept.ends.shrink_to_fit();
        *self = kept;
    }

    /// Path `i` relative to the root (the whole path for one not under it): the name reports,
    /// journals and shards key an image by, without joining the root on and stripping it off.
    pub fn rel(&self, i: usize) -> &Path {
        self.stored(i).0
    }

    /// Path `i` relative to the root as stored (the whole path for one kept whole).
    fn stored(&self, i: usize) -> (&Path, bool) {
        let start = if i == 0 { 0 } else { (self.ends[i - 1] & !WHOLE) as usize };
        let end = self.ends[i];
        // SAFETY: the bytes between two ends are exactly those of one `OsStr` that `push`
        // took with `as_encoded_bytes` in this process, unchanged since.
        let s = unsafe { OsStr::from_encoded_bytes_unchecked(&self.bytes[start..(end & !WHOLE) as usize]) };
        (Path::new(s), end & WHOLE != 0)
    }
}

impl ImagePaths for PathList {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn path(&self, i: usize) -> Cow<'_, Path> {
        match self.stored(i) {
            (whole, true) => Cow::Borrowed(whole),
            (rel, false) => Cow::Owned(self.root.join(rel)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_back_the_paths_pushed_in_order() {
        let root = Path::new("/data/val");
        let paths = ["/data/val/a/1.png", "/data/val/b/é 2.jpg", "/data/val", "/elsewhere/x.png", "/data/val/c.png"];
        let mut list = PathList::new(root);
        for p in paths {
            list.push(Path::new(p));
        }
        assert_eq!(list.len(), paths.len());
        for (i, p) in paths.iter().enumerate() {
            assert_eq!(list.path(i), Path::new(p));
        }
        assert_eq!(list.rel(0), Path::new("a/1.png"));
        assert_eq!(list.rel(3), Path::new("/elsewhere/x.png"), "a path not under the root stays whole");
        list.retain(|p| p.extension().is_some_and(|e| e == "png"));
        let kept: Vec<_> = (0..list.len()).map(|i| list.path(i).into_owned()).collect();
        assert_eq!(kept, ["/data/val/a/1.png", "/elsewhere/x.png", "/data/val/c.png"].map(PathBuf::from));
    }
}
