//! Guided backpropagation, Guided Grad-CAM and BatchNormalization's input gradient against independent
//! references: two small random-weight CNNs (a ReLU-only one, and one with ReLU6 exported as Clip and
//! BatchNormalization nodes with variances of the order of epsilon), with arrays from
//! `scripts/reference_guided.py` (tests/data/guided/index.toml):
//!
//! - the guided gradient from a hand-written torch guided backpropagation with camscope's documented rule (ReLU
//!   and ReLU6-style Clip both pass the gradient only where the input is inside the open interval and the
//!   gradient is positive), and for the ReLU-only model also from pytorch-grad-cam's own `GuidedBackpropReLUModel`;
//! - the plain input gradient from torch autograd (through both BatchNormalization nodes);
//! - pytorch-grad-cam's GradCAM map at input resolution, and the Guided Grad-CAM image as the library's cam.py
//!   example forms it (`gradcam * guided`, before `deprocess_image`).
//!
//! Everything is compared relative to the largest reference value, to 1e-4. The script asserts that a guided
//! mask on `g < 0`, no guided mask, a plain Clip (the library's ReLU-only swap) and BN without epsilon each move
//! these references by more than 50 % (see its output), so each of those bugs fails here.

mod common;

use std::path::PathBuf;

use camscope::cam::Method;
use camscope::engine::explainer::Explainer;
use camscope::engine::{Engine, EngineConfig, LoadedModel, Seed};
use camscope::grad::ScoreKind;
use common::onnx_build::cpu;
use ndarray::{Array2, ArrayD, Ix2, Ix4};
use serde::Deserialize;

const TOLERANCE: f32 = 1e-4;

#[derive(Deserialize)]
struct Index {
    model: Vec<Model>,
}

#[derive(Deserialize)]
struct Model {
    name: String,
    layer: String,
    top: Vec<usize>,
    logits: Vec<f32>,
    map: Vec<MapEntry>,
}

#[derive(Deserialize)]
struct MapEntry {
    class: usize,
    guided: String,
    gradient: String,
    guided_peer: Option<String>,
    gradcam: String,
    guided_gradcam: String,
}

fn dir() -> PathBuf {
    common::data("guided")
}

fn index() -> Index {
    let idx: Index = toml::from_str(&std::fs::read_to_string(dir().join("index.toml")).unwrap()).unwrap();
    assert_eq!(idx.model.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["guided_relu", "guided_relu6_bn"]);
    assert!(idx.model.iter().all(|m| m.map.len() == 2), "two classes per model");
    idx
}

fn npy(name: &str) -> ArrayD<f32> {
    let (shape, data) = common::read_npy_f32(&dir().join(name));
    ArrayD::from_shape_vec(shape, data).unwrap()
}

fn open(m: &Model) -> LoadedModel {
    LoadedModel::open(&dir().join(format!("{}.onnx", m.name)), None, &cpu())
        .unwrap_or_else(|e| panic!("{}: {e}", m.name))
}

/// d(logit of `class`)/d(input) through camscope's gradient graph, guided or plain, `[1, 3, 32, 32]`.
fn input_gradient(lm: &LoadedModel, x: &ArrayD<f32>, class: usize, guided: bool) -> ArrayD<f32> {
    let input = lm.analysis.input_target();
    let mut ex = Explainer::new(&lm.analysis, &lm.path, &input, ScoreKind::Logit, guided, &cpu()).expect("explainer");
    let mut seed = Array2::<f32>::zeros((1, lm.classes));
    seed[[0, class]] = 1.0;
    ex.head(x.view(), &[], seed.view()).expect("head").gradient
}

fn ops(lm: &LoadedModel) -> Vec<String> {
    lm.analysis.model().graph.as_ref().unwrap().node.iter().map(|n| n.op_type.clone().unwrap_or_default()).collect()
}

#[test]
fn guided_backprop_matches_hand_written_torch_and_the_peers_guided_relu_model() {
    let mut checked = 0;
    for m in &index().model {
        let lm = open(m);
        let x = npy(&format!("{}_input.npy", m.name));
        for r in &m.map {
            let got = input_gradient(&lm, &x, r.class, true);
            let what = format!("{} class {} guided gradient", m.name, r.class);
            let d = common::max_rel_diff(&what, &got, &npy(&r.guided).insert_axis(ndarray::Axis(0)));
            eprintln!("{what}: {d:.1e} (relative) from hand-written torch guided backprop");
            assert!(d <= TOLERANCE, "{what}: {d} relative");
            if let Some(peer) = &r.guided_peer {
                let d = common::max_rel_diff(&what, &got, &npy(peer).insert_axis(ndarray::Axis(0)));
                eprintln!("{what}: {d:.1e} (relative) from pytorch-grad-cam's GuidedBackpropReLUModel");
                assert!(d <= TOLERANCE, "{what} vs GuidedBackpropReLUModel: {d} relative");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 2, "the ReLU-only model is checked against the peer's own guided backprop");
}

#[test]
fn batch_normalization_model_input_gradient_matches_torch_autograd() {
    let idx = index();
    let m = idx.model.iter().find(|m| m.name == "guided_relu6_bn").unwrap();
    let lm = open(m);
    let ops = ops(&lm);
    assert_eq!(ops.iter().filter(|o| *o == "BatchNormalization").count(), 2, "{ops:?}");
    assert!(ops.iter().any(|o| o == "Clip"), "{ops:?}");
    let x = npy(&format!("{}_input.npy", m.name));
    for r in &m.map {
        let got = input_gradient(&lm, &x, r.class, false);
        let what = format!("{} class {} input gradient", m.name, r.class);
        let d = common::max_rel_diff(&what, &got, &npy(&r.gradient).insert_axis(ndarray::Axis(0)));
        eprintln!("{what}: {d:.1e} (relative) from torch autograd");
        assert!(d <= TOLERANCE, "{what}: {d} relative");
    }
}

#[test]
fn guided_grad_cam_through_the_engine_matches_the_peers_formula() {
    for m in &index().model {
        let lm = open(m);
        let config = EngineConfig { layer: Some(m.layer.clone()), session: cpu(), ..EngineConfig::default() };
        let mut engine = Engine::from_model(lm, config).unwrap_or_else(|e| panic!("{}: {e}", m.name));
        let x = npy(&format!("{}_input.npy", m.name)).into_dimensionality::<Ix4>().unwrap();
        let image = engine.body_batch(x.view()).unwrap().remove(0);
        let logits = image.scores.logits.clone().expect("logits");
        let d = common::max_abs_diff(&format!("{} logits", m.name), &logits, &m.logits);
        assert!(d <= 1e-4, "{}: logits differ by {d}", m.name);
        let order = {
            let mut i: Vec<usize> = (0..logits.len()).collect();
            i.sort_by(|a, b| logits[*b].total_cmp(&logits[*a]));
            i
        };
        assert_eq!(order[..2], m.top[..], "{}: top-2", m.name);
        for r in &m.map {
            let out = engine.map(&image, Method::GuidedGradCam, &Seed::Class(r.class)).unwrap();
            // The Grad-CAM part at input resolution, as the peer's GradCAM returns it.
            let cam = camscope::render::upsample_map(out.normalized.map.view(), 32, 32);
            let want_cam = npy(&r.gradcam).into_dimensionality::<Ix2>().unwrap();
            let what = format!("{} class {}", m.name, r.class);
            let d_cam = common::max_abs_diff(&format!("{what} Grad-CAM at input size"), &cam, &want_cam);
            let guided = out.guided.as_ref().unwrap_or_else(|| panic!("{what}: no guided image"));
            let d = common::max_rel_diff(&format!("{what} Guided Grad-CAM"), guided, &npy(&r.guided_gradcam));
            eprintln!("{what}: Grad-CAM {d_cam:.1e}, Guided Grad-CAM {d:.1e} (relative)");
            assert!(d_cam <= TOLERANCE, "{what}: Grad-CAM differs by {d_cam}");
            assert!(d <= TOLERANCE, "{what}: Guided Grad-CAM differs by {d} relative");
        }
    }
}
