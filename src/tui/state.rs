//! The inspector's state as plain data: what is listed, selected, shown and asked for.
//!
//! Nothing here does I/O or knows the terminal: [`update`](super::update) changes an [`App`] in
//! response to events, [`view`](super::view) draws it. Keeping the state pure is what lets the
//! key handling and the stale-result rules be unit tested without a terminal or a model.
//!
//! Extension points for the triage work (issue 6):
//! - [`FileEntry`] carries per-image facts; add ground truth / marks there and show them in
//!   `view::file_line`.
//! - [`FileList::order`] is the visible order (indices into `entries`): a filter or a sort
//!   rebuilds it with [`FileList::set_order`]; cursor, scrolling and mouse hits all go through it.
//! - [`ViewMode`] is the image pane's mode: a compare view (predicted | true | contrastive) is
//!   one more variant plus one more arm in `update::compose`.
//!
//! Triage (issue 6) lives in [`App::triage`] (see [`super::triage`]): each [`FileEntry`]
//! points at its scan result, the filter and sort rebuild [`FileList::order`], and
//! [`ViewMode::Compare`] shows the maps the worker computes for a mistake.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::RgbImage;

use crate::cam::{MapStatus, Method};
use crate::engine::Fault;
use crate::engine::Loaded;
use crate::explanation::Timings;
use crate::grad::ScoreKind;
use crate::model::Labels;
use crate::render::Colormap;
use crate::scores::Prediction;

use super::triage::{SummaryItem, Triage};
use super::worker::CompareMaps;

/// Which list the arrow keys move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Files,
    Classes,
}

/// What the image pane shows, cycled by `v`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewMode {
    Overlay,
    Heatmap,
    Original,
    SideBySide,
    /// A mistake's maps side by side: the predicted (or target) class, the true class, and
    /// their contrast. Only offered for a misclassified image; it stays on while the user
    /// moves (so `n` walks the mistakes in it) and shows the overlay for other images.
    Compare,
}

impl ViewMode {
    /// The modes `v` cycles through (Compare joins them where it is available).
    pub const ALL: [ViewMode; 4] = [ViewMode::Overlay, ViewMode::Heatmap, ViewMode::Original, ViewMode::SideBySide];

    /// The next mode of the `v` cycle; `compare` says whether the compare view is available.
    pub fn next(self, compare: bool) -> Self {
        match self {
            ViewMode::SideBySide if compare => ViewMode::Compare,
            ViewMode::Compare => ViewMode::Overlay,
            _ => {
                let i = Self::ALL.iter().position(|&m| m == self).expect("every other mode is in ALL");
                Self::ALL[(i + 1) % Self::ALL.len()]
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ViewMode::Overlay => "overlay",
            ViewMode::Heatmap => "heatmap",
            ViewMode::Original => "original",
            ViewMode::SideBySide => "original | overlay",
            ViewMode::Compare => "compare: predicted | true | predicted − true",
        }
    }
}

/// A target layer as the layer picker lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    pub tensor: String,
    pub op: String,
    pub shape: String,
    pub is_default: bool,
}

/// What the engine told the UI at start: fixed for the session except layer and score.
#[derive(Debug, Clone)]
pub struct EngineInfo {
    pub model_name: String,
    pub layer: LayerInfo,
    pub layers: Vec<LayerInfo>,
    pub score: ScoreKind,
    /// Execution provider actually in use (`CPU`, `CUDA`).
    pub provider: String,
    /// Why CUDA is not used, when `auto` fell back to the CPU.
    pub fallback: Option<String>,
    /// Why the on-disk shape cache could not be used (the model loaded anyway, measuring its
    /// shapes: only the next start is slower).
    pub cache_note: Option<String>,
    pub labels: Arc<Labels>,
}

/// Choices the user starts with (from the command line).
#[derive(Debug, Clone)]
pub struct Settings {
    pub root: PathBuf,
    pub top_k: usize,
    pub method: Method,
    pub colormap: Colormap,
    pub alpha: f64,
    pub save_dir: PathBuf,
    /// Key bindings: what each key press means.
    pub keys: super::keys::KeyList,
}

/// One image of the listing.
#[derive(Debug, Clone, PartialEq)]
pub struct FileEntry {
    pub path: PathBuf,
    /// The path as shown: relative to the root.
    pub name: String,
    /// Top-1 class and its probability, once computed.
    pub prediction: Option<(usize, f32)>,
    /// Why the image could not be used, once tried.
    pub error: Option<String>,
    /// Which kind of failure `error` is (the file list names it in a word).
    pub fault: Fault,
    /// True class, when the ground truth says.
    pub truth: Option<usize>,
    /// Slot of its scan result in [`Triage::results`], once scanned.
    pub result: Option<usize>,
    /// Recorded results only: the image is not under the root (its recorded prediction
    /// stands; its maps cannot be computed until `--root` points at it).
    pub missing: bool,
}

/// The images under the root, in listing order, with a visible order on top.
#[derive(Debug, Clone, Default)]
pub struct FileList {
    pub entries: Vec<FileEntry>,
    /// Visible rows: indices into `entries` (all of them, in listing order, until a filter or a
    /// sort says otherwise).
    pub order: Vec<usize>,
    /// Position in `order` of the selected row.
    pub cursor: usize,
    /// First visible row (scrolling).
    pub offset: usize,
    /// Whether the listing has finished.
    pub done: bool,
    /// One line on what the scan skipped, once done.
    pub skipped: Option<String>,
    index: HashMap<PathBuf, usize>,
}

impl FileList {
    /// Append newly listed images (shown in listing order unless a custom order is set).
    pub fn extend(&mut self, root: &Path, paths: Vec<PathBuf>) {
        let follows = self.order.len() == self.entries.len();
        for path in paths {
            let name = display_name(root, &path);
            let i = self.entries.len();
            self.index.insert(path.clone(), i);
            self.entries.push(FileEntry {
                path,
                name,
                prediction: None,
                error: None,
                fault: Fault::default(),
                truth: None,
                result: None,
                missing: false,
            });
            if follows {
                self.order.push(i);
            }
        }
    }

    /// Replace the visible order (a filter or a sort); keeps the selected image selected when it
    /// is still visible.
    pub fn set_order(&mut self, order: Vec<usize>) {
        let selected = self.selected_index();
        self.order = order;
        self.cursor = selected.and_then(|s| self.order.iter().position(|&i| i == s)).unwrap_or(0);
        self.offset = self.offset.min(self.cursor);
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Index into `entries` of the selected row.
    pub fn selected_index(&self) -> Option<usize> {
        self.order.get(self.cursor).copied()
    }

    pub fn selected(&self) -> Option<&FileEntry> {
        self.selected_index().map(|i| &self.entries[i])
    }

    /// The entry for `path`, if listed.
    pub fn entry_mut(&mut self, path: &Path) -> Option<&mut FileEntry> {
        let i = *self.index.get(path)?;
        Some(&mut self.entries[i])
    }

    /// Paths of the rows within `radius` of the cursor, nearest first (the prefetch order).
    pub fn neighbours(&self, radius: usize) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for d in 1..=radius {
            for pos in [self.cursor.checked_add(d), self.cursor.checked_sub(d)].into_iter().flatten() {
                if let Some(&i) = self.order.get(pos) {
                    out.push(self.entries[i].path.clone());
                }
            }
        }
        out
    }
}

/// `path` relative to `root` for display (the file name when the root is the file itself),
/// on one line whatever characters the name holds (see [`crate::render::printable`]).
pub fn display_name(root: &Path, path: &Path) -> String {
    let name = match path.strip_prefix(root) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel.display().to_string(),
        _ => path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned()),
    };
    crate::render::printable(&name).into_owned()
}

/// A map as received from the worker.
#[derive(Debug, Clone)]
pub struct ShownMap {
    pub serial: u64,
    pub class: usize,
    pub method: Method,
    /// Normalised map at feature resolution.
    pub map: Arc<ndarray::Array2<f32>>,
    pub status: MapStatus,
    pub timings: Timings,
    /// The true class's map and the contrast, when the request asked to compare.
    pub compare: Option<CompareMaps>,
}

/// A caption over one image of a [`Picture`] (the compare view labels its panels).
#[derive(Debug, Clone, PartialEq)]
pub struct Caption {
    /// What the panel is ("predicted 38%").
    pub title: String,
    /// The class or classes it explains.
    pub detail: String,
}

/// The pixels the image pane shows (one image, or two side by side), composed from the view,
/// the map, the mode, the colormap and alpha. `id` changes whenever the pixels do, so renderers
/// can cache what they derive from them.
#[derive(Debug, Clone)]
pub struct Picture {
    pub id: u64,
    pub images: Vec<Arc<RgbImage>>,
    /// One caption per image, or none.
    pub captions: Vec<Caption>,
    /// Why the view shows less than its mode says (the compare view on a correct image).
    pub note: Option<String>,
    /// Milliseconds spent composing.
    pub compose_ms: f64,
}

/// The selected image and what is known about it.
#[derive(Debug, Clone)]
pub struct Current {
    pub path: PathBuf,
    /// Serial of the request that asked for this image (results for older serials of another
    /// path are stale).
    pub serial: u64,
    pub loaded: Option<Arc<Loaded>>,
    /// Top-k of the loaded image.
    pub top: Vec<Prediction>,
    pub error: Option<String>,
    pub map: Option<ShownMap>,
    /// Whether the body results came from the cache (a prefetched or revisited image).
    pub cached: bool,
}

impl Current {
    pub fn new(path: PathBuf, serial: u64) -> Self {
        Self { path, serial, loaded: None, top: Vec::new(), error: None, map: None, cached: false }
    }
}

/// The class search opened by `/`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Search {
    pub query: String,
    /// Matching classes: (index, matched name).
    pub hits: Vec<(usize, String)>,
    pub cursor: usize,
}

/// The layer picker opened by `L`.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerPicker {
    pub cursor: usize,
    pub offset: usize,
}

/// The triage summary opened by `t`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SummaryPopup {
    /// The selected row's item (kept by value: the rows move as the scan goes on).
    pub selected: Option<SummaryItem>,
}

/// A window over the panes.
#[derive(Debug, Clone, PartialEq)]
pub enum Popup {
    None,
    Help,
    Search(Search),
    Layers(LayerPicker),
    Summary(SummaryPopup),
}

/// The whole state of the inspector.
#[derive(Debug, Clone)]
pub struct App {
    pub settings: Settings,
    pub info: EngineInfo,
    pub files: FileList,
    pub focus: Focus,
    pub view: ViewMode,
    pub method: Method,
    pub colormap: Colormap,
    pub alpha: f64,
    pub popup: Popup,
    pub current: Option<Current>,
    /// The class the map explains (`None`: the image's top-1, until it is known).
    pub target: Option<usize>,
    /// Serial of the latest map request: only its answer is shown.
    pub map_serial: u64,
    /// The true class the latest map request compares against (compare view), if any.
    pub map_versus: Option<usize>,
    /// The last serial handed out.
    pub serial: u64,
    pub picture: Option<Picture>,
    /// Last picture id handed out.
    pub picture_serial: u64,
    /// Terminal size (columns, rows), for layout-dependent decisions (scrolling, mouse).
    pub size: (u16, u16),
    /// A line for the status bar (saved file, errors), until the next one.
    pub message: Option<String>,
    /// Engine cache: images and bytes.
    pub cache: (usize, usize),
    /// Milliseconds the last frame took to draw.
    pub frame_ms: f64,
    pub triage: Triage,
    pub quit: bool,
}

impl App {
    /// A new inspector; `triage` says whether a scan against ground truth will run.
    pub fn new(settings: Settings, info: EngineInfo, triage: bool) -> Self {
        Self {
            message: {
                let notes: Vec<String> = info
                    .fallback
                    .iter()
                    .map(|why| format!("running on the CPU: CUDA unavailable ({why})"))
                    .chain(info.cache_note.iter().cloned())
                    .collect();
                (!notes.is_empty()).then(|| notes.join("; "))
            },
            method: settings.method,
            colormap: settings.colormap,
            alpha: settings.alpha,
            settings,
            info,
            files: FileList::default(),
            focus: Focus::Files,
            view: ViewMode::Overlay,
            popup: Popup::None,
            current: None,
            target: None,
            map_serial: 0,
            map_versus: None,
            serial: 0,
            picture: None,
            picture_serial: 0,
            size: (0, 0),
            cache: (0, 0),
            frame_ms: 0.0,
            triage: Triage::new(triage),
            quit: false,
        }
    }

    /// Whether a map is being computed for what the user asked last.
    pub fn computing(&self) -> bool {
        match &self.current {
            Some(c) if c.error.is_none() => c.map.as_ref().is_none_or(|m| m.serial != self.map_serial),
            _ => false,
        }
    }

    /// Serial of the map on screen, if it answers the latest request.
    pub fn shown_serial(&self) -> Option<u64> {
        let m = self.current.as_ref()?.map.as_ref()?;
        (m.serial == self.map_serial).then_some(m.serial)
    }

    /// Rows of the classes pane: the top-k, then the target when it is outside them.
    pub fn class_rows(&self) -> Vec<Prediction> {
        let Some(cur) = &self.current else { return Vec::new() };
        let mut rows = cur.top.clone();
        if let (Some(t), Some(loaded)) = (self.target, &cur.loaded) {
            if !rows.iter().any(|p| p.index == t) && t < loaded.scores.probabilities.len() {
                rows.push(loaded.scores.prediction(t, &self.info.labels));
            }
        }
        rows
    }

    /// The class highlighted in the classes pane (the target, or the top-1 before one is set).
    pub fn highlighted_class(&self) -> Option<usize> {
        self.target.or_else(|| self.current.as_ref()?.top.first().map(|p| p.index))
    }

    /// The current image's list entry.
    pub fn current_entry(&self) -> Option<&FileEntry> {
        let path = &self.current.as_ref()?.path;
        self.files.index.get(path).map(|&i| &self.files.entries[i])
    }

    /// The current image's top-1 class: from its loaded scores, else the scan, else a prefetch.
    pub fn current_prediction(&self) -> Option<usize> {
        if let Some(l) = self.current.as_ref().and_then(|c| c.loaded.as_ref()) {
            return Some(l.scores.argmax());
        }
        let e = self.current_entry()?;
        self.triage.result(e).and_then(|r| r.predicted()).or(e.prediction.map(|p| p.0))
    }

    /// The true class to compare the current image against: its truth when it is known and
    /// the image is misclassified (the compare view's condition).
    pub fn compare_truth(&self) -> Option<usize> {
        let truth = self.current_entry()?.truth?;
        (self.current_prediction()? != truth).then_some(truth)
    }

    pub fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }
}
