//! The inspector on recorded results (`camscope OUT`, OUT written by `camscope triage` or
//! `camscope merge`): the file list, the marks, the summary, the filters and the sorts come
//! from the predictions the triage recorded, all of them before the first frame, and no
//! model runs over the dataset. Maps are still computed on demand by the engine thread, from
//! the images under [`Recorded::root`].
//!
//! Why a source of its own rather than a scan served from the cache: the results were made
//! on another machine (a cluster, with its own paths and its own cache), and a scan would
//! need every image readable here, which is exactly what browsing over SSH with the dataset
//! elsewhere, or moved, must not require. The recorded top-5 is everything the summary,
//! the marks and the sorts read ([`ImageResult`] keeps no more for a scanned image either).
//!
//! Images that are not under the root (a dataset moved, or not copied) stay listed and
//! marked `missing`: their recorded predictions are as good as ever, only their maps need
//! the file. The check runs on a thread of its own ([`spawn_missing_check`]) because on a
//! network file system a million `stat`s take longer than a first frame should.

use std::path::PathBuf;
use std::sync::mpsc::Sender;

use crate::dataset::stats::ImageResult;

/// Recorded predictions, ready to show.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Where the images are looked for (the recorded dataset root, or `--root`).
    pub root: PathBuf,
    /// Every image of the output, in listing order (absolute: `root` joined with the
    /// recorded relative path), scored or unreadable.
    pub images: Vec<PathBuf>,
    /// Ground truth of each of `images`.
    pub truths: Vec<Option<usize>>,
    /// Recorded results by index into `images`.
    pub results: Vec<(usize, ImageResult)>,
    /// Images the triage could not score, by index into `images`, with why: the file could
    /// not be read, or the model scored it NaN.
    pub unreadable: Vec<(usize, String, crate::engine::Fault)>,
    /// What the summary view should say once (ground truth source, unlabeled folders,
    /// decoder warnings).
    pub notes: Vec<String>,
    /// What the status bar calls the results (`triage out/`, `triage out/ · shard 2/4`).
    pub source: String,
    /// A line for the status bar at start (a layer other than the triage's, ...).
    pub message: Option<String>,
}

/// News from the check for missing images.
#[derive(Debug, Clone, PartialEq)]
pub struct Missing {
    /// Indices (into [`Recorded::images`]) of the images not found under the root.
    pub indices: Vec<usize>,
    /// Images checked (all of them once the check is done).
    pub checked: usize,
    /// Whether the root itself is a folder here (the fix differs: a wrong `--root`, or
    /// images deleted from a folder that is there).
    pub root_exists: bool,
}

/// Check, off the UI thread, which recorded images are not under the root; one message at
/// the end (`send` returns false once the UI is gone).
pub fn spawn_missing_check<M: Send + 'static>(
    root: PathBuf,
    images: Vec<PathBuf>,
    tx: Sender<M>,
    wrap: fn(Missing) -> M,
) {
    std::thread::Builder::new()
        .name("camscope-missing".into())
        .spawn(move || {
            let root_exists = root.is_dir();
            // A missing root means every image is missing: no need to ask for each.
            let indices: Vec<usize> = (0..images.len()).filter(|&i| !root_exists || !images[i].is_file()).collect();
            let _ = tx.send(wrap(Missing { indices, checked: images.len(), root_exists }));
        })
        .expect("spawn the missing-image check");
}

/// The status line about missing images: how many, where they were looked for, and the fix.
pub fn missing_message(m: &Missing, root: &std::path::Path) -> Option<String> {
    let (missing, total) = (m.indices.len(), m.checked);
    if missing == 0 {
        return None;
    }
    let whole = if missing == total { "all " } else { "" };
    let gone = if m.root_exists { "" } else { " (no such folder)" };
    Some(format!(
        "{whole}{missing} of {total} images missing under {}{gone}: for maps, open with --root DIR",
        root.display()
    ))
}
