//! Fixtures for the inspector's unit tests: an [`App`] without a model, and body results made
//! up from class probabilities.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use image::RgbImage;
use ndarray::{Array2, Array3, ArrayD, IxDyn};

use crate::cam::{MapStatus, Method};
use crate::engine::Loaded;
use crate::explanation::Timings;
use crate::grad::ScoreKind;
use crate::model::Labels;
use crate::render::Colormap;
use crate::scores::ClassScores;

use super::state::{App, EngineInfo, LayerInfo, Settings};
use super::update::{Cmd, Msg, update};
use super::worker::{Request, Response};

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
    };
    let info = EngineInfo {
        model_name: "Tiny".into(),
        layer: layer("features", true),
        layers: vec![layer("stem", false), layer("features", true)],
        score: ScoreKind::Logit,
        provider: "CPU".into(),
        fallback: None,
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
        scores: ClassScores::from_output(&logits, false),
        activation: ArrayD::zeros(IxDyn(&[1, 2, 2, 2])),
        side: Vec::new(),
        timings: Timings::default(),
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
