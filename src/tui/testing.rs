//! Fixtures for the inspector's unit tests: an [`App`] without a model, and body results made
//! up from class probabilities.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use image::RgbImage;
use ndarray::{Array2, Array3, ArrayD, IxDyn};

use crate::cam::{MapStatus, Method};
use crate::dataset::stats::{ClassProb, ImageResult};
use crate::engine::Loaded;
use crate::explanation::Timings;
use crate::grad::ScoreKind;
use crate::model::Labels;
use crate::render::Colormap;
use crate::scores::ClassScores;

use super::scanner::ScanEvent;
use super::state::{App, EngineInfo, LayerInfo, Settings};
use super::update::{Cmd, Msg, update};
use super::worker::{CompareMaps, Request, Response};

pub const CLASSES: usize = 10;

pub fn layer(name: &str, is_default: bool) -> LayerInfo {
    LayerInfo { tensor: name.into(), op: "Conv".into(), shape: "[N, 8, 7, 7]".into(), is_default }
}

pub fn app() -> App {
    let settings = Settings {
        root: PathBuf::from("/data"),
        top_k: 3,
        method: Method::GradCam,
        colormap: Colormap::Jet,
        alpha: 0.5,
        save_dir: PathBuf::from("/out"),
        keys: Default::default(),
    };
    let info = EngineInfo {
        model_name: "Tiny".into(),
        layer: layer("features", true),
        layers: vec![layer("stem", false), layer("features", true)],
        score: ScoreKind::Logit,
        provider: "CPU".into(),
        fallback: None,
        cache_note: None,
        labels: Arc::new(Labels::numbered(CLASSES)),
    };
    let mut app = App::new(settings, info, false);
    app.size = (120, 40);
    app
}

pub fn path(name: &str) -> PathBuf {
    Path::new("/data").join(name)
}

/// An app listing `names`, with the first selected (its requests discarded).
pub fn listed(names: &[&str]) -> App {
    let mut a = app();
    update(&mut a, Msg::Listed { paths: names.iter().map(|n| path(n)).collect(), done: true, skipped: None });
    a
}

/// Body results whose top classes are `9, 8, 7, ...` (class `i` has probability ∝ i+1),
/// with a view of one colour.
pub fn loaded(name: &str, colour: [u8; 3]) -> Arc<Loaded> {
    let logits: Vec<f32> = (0..CLASSES).map(|i| i as f32).collect();
    Arc::new(Loaded {
        path: path(name),
        view: RgbImage::from_pixel(8, 8, image::Rgb(colour)),
        input: Array3::zeros((3, 8, 8)),
        scores: ClassScores::from_output(&logits, Default::default()),
        activation: ArrayD::zeros(IxDyn(&[1, 2, 2, 2])),
        side: Vec::new(),
        timings: Timings::default(),
        warnings: Vec::new(),
    })
}

pub fn loaded_msg(serial: u64, name: &str) -> Msg {
    Msg::Worker(Response::Loaded {
        serial,
        path: path(name),
        loaded: loaded(name, [200, 0, 0]),
        cached: false,
        cache: (1, 1000),
    })
}

/// A map answer: a 2×2 map with its peak at `peak` (row-major index).
pub fn map_msg(serial: u64, name: &str, class: usize, peak: usize) -> Msg {
    let mut m = Array2::zeros((2, 2));
    m[[peak / 2, peak % 2]] = 1.0;
    Msg::Worker(Response::Map {
        serial,
        path: path(name),
        class,
        method: Method::GradCam,
        map: Arc::new(m),
        status: MapStatus::Ok,
        timings: Timings { head_ms: 0.5, ..Timings::default() },
        compare: None,
        cache: (1, 1),
    })
}

pub fn press(code: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

pub fn ch(c: char) -> Msg {
    press(KeyCode::Char(c))
}

/// The `Show` requests among `cmds`: (serial, file name, class).
pub fn shows(cmds: &[Cmd]) -> Vec<(u64, String, Option<usize>)> {
    cmds.iter()
        .filter_map(|c| match c {
            Cmd::Worker(Request::Show { serial, path, class, .. }) => {
                Some((*serial, path.file_name().unwrap().to_string_lossy().into_owned(), *class))
            }
            _ => None,
        })
        .collect()
}

/// A result for `name`: predicted `(class, p)`, and the truth `(class, p(truth))` if labeled.
pub fn result(name: &str, predicted: (usize, f32), truth: Option<(usize, f32)>) -> ImageResult {
    let mut top = vec![ClassProb { class: predicted.0, probability: predicted.1 }];
    if let Some((t, p)) = truth.filter(|t| t.0 != predicted.0) {
        top.push(ClassProb { class: t, probability: p });
    }
    let rest: Vec<usize> = (0..CLASSES).filter(|c| top.iter().all(|t| t.class != *c)).collect();
    top.extend(rest.into_iter().map(|class| ClassProb { class, probability: 0.001 }));
    ImageResult { path: path(name), truth: truth.map(|t| t.0), top, p_truth: truth.map(|t| t.1) }
}

/// The triage fixture, listed in this order (the engine fixture [`loaded`] predicts class 9):
/// - `a.png`: class 9, right (0.9)
/// - `b.png`: class 1 taken for 9 (0.6; p(true) 0.3)
/// - `c.png`: class 3, right (0.5)
/// - `d.png`: class 3 taken for 2 (0.95; p(true) 0.01)
/// - `e.png`: unlabeled, predicted 4 (0.7)
pub fn triage_results() -> Vec<(usize, ImageResult)> {
    vec![
        (0, result("a.png", (9, 0.9), Some((9, 0.9)))),
        (1, result("b.png", (9, 0.6), Some((1, 0.3)))),
        (2, result("c.png", (3, 0.5), Some((3, 0.5)))),
        (3, result("d.png", (2, 0.95), Some((3, 0.01)))),
        (4, result("e.png", (4, 0.7), None)),
    ]
}

pub const TRIAGE_NAMES: [&str; 5] = ["a.png", "b.png", "c.png", "d.png", "e.png"];

/// An app with ground truth, listed (a.png selected) and waiting for the scan.
pub fn triage_listed() -> App {
    let mut a = app();
    a.triage = super::triage::Triage::new(true);
    update(&mut a, Msg::Listed { paths: TRIAGE_NAMES.iter().map(|n| path(n)).collect(), done: true, skipped: None });
    a
}

/// [`triage_listed`] with the truth known and every result in.
pub fn triaged() -> App {
    let mut a = triage_listed();
    let truths = triage_results().into_iter().map(|(_, r)| r.truth).collect();
    update(&mut a, Msg::Scan(ScanEvent::Truth { truths, headline: None, notes: vec!["a note".into()] }));
    update(&mut a, progress(triage_results(), 5, 0));
    update(&mut a, Msg::Scan(ScanEvent::Finished { seconds: 1.5, note: None }));
    a
}

/// Results of the scan as its thread sends them.
pub fn progress(results: Vec<(usize, ImageResult)>, computed: usize, cached: usize) -> Msg {
    Msg::Scan(ScanEvent::Progress { results, unreadable: Vec::new(), computed, cached, rate: Some(12.5) })
}

/// The compare maps of a `Show` with `versus`.
pub fn compare_map_msg(serial: u64, name: &str, class: usize, truth: usize) -> Msg {
    let Msg::Worker(Response::Map { serial, path, class, method, map, status, timings, cache, .. }) =
        map_msg(serial, name, class, 0)
    else {
        unreachable!()
    };
    let mut other = Array2::zeros((2, 2));
    other[[1, 1]] = 1.0;
    let compare = CompareMaps {
        truth,
        truth_map: Arc::new(other.clone()),
        truth_status: MapStatus::Ok,
        contrast: Arc::new(other.t().to_owned()),
        contrast_status: MapStatus::Ok,
    };
    Msg::Worker(Response::Map { serial, path, class, method, map, status, timings, compare: Some(compare), cache })
}

/// The `versus` of the `Show` requests among `cmds`.
pub fn versus(cmds: &[Cmd]) -> Vec<Option<usize>> {
    cmds.iter()
        .filter_map(|c| match c {
            Cmd::Worker(Request::Show { versus, .. }) => Some(*versus),
            _ => None,
        })
        .collect()
}

/// File names of the visible rows, in order.
pub fn visible(a: &App) -> Vec<String> {
    a.files.order.iter().map(|&i| a.files.entries[i].name.clone()).collect()
}
