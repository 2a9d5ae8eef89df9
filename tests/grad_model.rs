//! The bundled EfficientNet-Lite0 end to end, through real ONNX Runtime: camscope's
//! gradients against torch autograd (arrays written by `scripts/reference_gradients.py`, see
//! `tests/data/reference/gradients/index.json`) and against central finite differences on
//! the real head, at the default layer and at an earlier one.
//!
//! The earlier layer is `/_blocks.13/Add_output_0` [1,192,7,7], block 13's residual sum: its
//! gradient comes back through block 14 (1x1 expand Conv, ReLU6, the exporter's computed
//! "same" Pad, 5x5 depthwise Conv, ReLU6, 1x1 project Conv, and the residual Add, where the
//! tensor fans out to both branches), block 15, the head Conv and the pool + dense head.
//! At the default layer the logit's gradient is only `fc.weight[class] / 49` everywhere, so
//! the earlier layer is where the rules really meet a trained network.

mod common;

use std::path::Path;
use std::sync::OnceLock;

use camscope::engine::explainer::{BodyOutput, Explainer};
use camscope::engine::{Device, LoadedModel, SessionOptions};
use camscope::grad::{Candidate, ScoreKind};
use camscope::imaging;
use camscope::onnx::attrs;
use common::onnx_build::{Tiny, analyse, array, fd_check};
use common::{bundled_model, data, read_npy_f32, root};
use ndarray::{Array2, ArrayD, IxDyn};
use serde::Deserialize;

const HEAD: &str = "/_swish_1/Clip_output_0";
const EARLY: &str = "/_blocks.13/Add_output_0";

/// camscope (float32 ONNX Runtime) vs torch autograd (float64), relative to the largest
/// reference gradient.
const TORCH_TOL: f32 = 1e-4;

fn cpu() -> SessionOptions {
    SessionOptions { device: Device::Cpu, threads: Some(1), ..SessionOptions::default() }
}

/// The bundled model, opened once for all tests of this file (opening measures every
/// tensor's shape with two forward runs).
fn model() -> &'static LoadedModel {
    static MODEL: OnceLock<LoadedModel> = OnceLock::new();
    MODEL.get_or_init(|| LoadedModel::open(&bundled_model(), None, &cpu()).expect("bundled model loads"))
}

#[derive(Debug, Deserialize)]
struct Index {
    entries: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    image: String,
    tensor: String,
    kind: String,
    score: Option<String>,
    class: Option<usize>,
    rank: Option<usize>,
    file: String,
}

fn reference_dir() -> std::path::PathBuf {
    data("reference/gradients")
}

fn index() -> Index {
    let path = reference_dir().join("index.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn reference(e: &Entry) -> ArrayD<f32> {
    let (shape, v) = read_npy_f32(&reference_dir().join(&e.file));
    ArrayD::from_shape_vec(IxDyn(&shape), v).unwrap()
}

/// The preprocessed photo as a batch of one.
fn photo(rel: &str) -> ArrayD<f32> {
    let x = imaging::load_tensor(&root().join(rel), &model().card.input).unwrap();
    x.insert_axis(ndarray::Axis(0)).into_dyn()
}

fn layer(name: Option<&str>) -> Candidate {
    let c = model().analysis.resolve_layer(name).expect("layer resolves");
    assert_eq!(c.tensor, name.unwrap_or(HEAD), "resolved to another tensor");
    c
}

fn explainer(target: &Candidate, kind: ScoreKind) -> Explainer {
    Explainer::new(&model().analysis, &model().path, target, kind, false, &cpu()).expect("explainer")
}

fn one_hot(classes: &[(usize, f32)]) -> Array2<f32> {
    let mut s = Array2::zeros((1, model().classes));
    for &(c, w) in classes {
        s[[0, c]] = w;
    }
    s
}

/// Gradient of `seed · scores` w.r.t. the target activations of `body`.
fn gradient(ex: &mut Explainer, body: &BodyOutput, seed: &Array2<f32>) -> ArrayD<f32> {
    let side: Vec<_> = body.side.iter().map(|s| s.view()).collect();
    ex.head(body.activation.view(), &side, seed.view()).expect("head").gradient
}

/// max |got - want| / max |want| (same shape, all finite: [`common::max_rel_diff`]).
fn relative(got: &ArrayD<f32>, want: &ArrayD<f32>) -> f32 {
    common::max_rel_diff("camscope vs torch autograd", got, want)
}

#[test]
fn gradients_equal_torch_autograd_at_the_default_and_an_earlier_layer() {
    let index = index();
    assert!(index.entries.len() >= 10, "index.json lists {} arrays", index.entries.len());
    let mut explainers: Vec<((String, String), Explainer)> = Vec::new();
    let mut checked = 0;
    for e in &index.entries {
        let score = e.score.as_deref().unwrap_or("logit");
        let key = (e.tensor.clone(), score.to_owned());
        if !explainers.iter().any(|(k, _)| *k == key) {
            let target = layer(if e.tensor == HEAD { None } else { Some(e.tensor.as_str()) });
            explainers.push((key.clone(), explainer(&target, score.parse().unwrap())));
        }
        let ex = &mut explainers.iter_mut().find(|(k, _)| *k == key).unwrap().1;
        let body = ex.body(photo(&e.image).view()).expect("body");
        let want = reference(e);
        let (what, err) = match e.kind.as_str() {
            "activations" => ("activations", relative(&body.activation, &want)),
            "gradient" => {
                let class = e.class.expect("gradient entries name their class");
                // The reference's ranks are the model's: the same top-2 here.
                let logits = body.output.as_slice().unwrap();
                let rank = 1 + logits.iter().filter(|&&v| v > logits[class]).count();
                assert_eq!(Some(rank), e.rank, "{}: class {class} ranks {rank} here", e.image);
                ("gradient", relative(&gradient(ex, &body, &one_hot(&[(class, 1.0)])), &want))
            }
            other => panic!("{}: unknown kind {other}", e.file),
        };
        eprintln!("{} {} class {:?} {score} {what}: relative max difference {err:.2e}", e.image, e.tensor, e.class);
        assert!(err <= TORCH_TOL, "{}: camscope differs from torch by {err:.2e} (relative) > {TORCH_TOL}", e.file);
        checked += 1;
    }
    // Both layers, both photos, logit and prob, and the earlier layer's activations.
    for (t, s) in [(HEAD, "logit"), (EARLY, "logit"), (EARLY, "prob")] {
        assert!(explainers.iter().any(|((tt, ss), _)| tt == t && ss == s), "no reference for {t} {s}");
    }
    assert_eq!(checked, index.entries.len());
}

/// Worst disagreement between the head's gradient and finite differences of `seed · scores`
/// over `n` elements of the activations spread over all channels, relative to the largest
/// gradient. The head may be piecewise linear (ReLU6): where an element sits on a kink the
/// gradient is one of the one-sided slopes (as in torch), and a kink inside the step shifts
/// a central difference by up to half the slope change, while float32 rounding noise grows
/// as the step shrinks. So each element is compared with the central difference at step
/// `h`, and where that disagrees with the one-sided differences at `h` and the central
/// difference at `h / 4`; it counts the closest. A wrong rule is off by all of them.
fn finite_differences(ex: &mut Explainer, body: &BodyOutput, seed: &Array2<f32>, h: f32, tol: f32, n: usize) -> f32 {
    let side: Vec<_> = body.side.iter().map(|s| s.view()).collect();
    let grad = ex.head(body.activation.view(), &side, seed.view()).expect("head").gradient;
    let max_grad = common::max_abs("gradient graph", &grad);
    assert!(max_grad > 0.0, "zero gradient");
    let mut f = |i: usize, step: f32| -> f64 {
        let mut a = body.activation.clone();
        a.as_slice_mut().unwrap()[i] += step;
        let s = ex.head(a.view(), &side, seed.view()).expect("head").scores;
        s.iter().zip(seed).map(|(s, w)| f64::from(*s) * f64::from(*w)).sum()
    };
    let len = grad.len();
    let mut worst = 0f32;
    for i in (0..n).map(|k| k * len / n) {
        let g = f64::from(grad.as_slice().unwrap()[i]);
        let rel = |fd: f64| ((fd - g).abs() / f64::from(max_grad)) as f32;
        let (plus, minus) = (f(i, h), f(i, -h));
        let hh = f64::from(h);
        let mut err = rel((plus - minus) / (2.0 * hh));
        if err >= tol / 4.0 {
            let f0 = f(i, 0.0);
            let quarter = (f(i, h / 4.0) - f(i, -h / 4.0)) / (hh / 2.0);
            err = [(plus - f0) / hh, (f0 - minus) / hh, quarter].into_iter().map(rel).fold(err, f32::min);
        }
        assert!(err.is_finite(), "element {i}: finite differences give {err}");
        worst = worst.max(err);
    }
    worst
}

#[test]
fn gradients_match_finite_differences_on_the_real_head() {
    let x = photo("samples/tabby/chelsea.png");
    let seed = one_hot(&[(285, 1.0)]); // Egyptian cat: the reference's top-1 for this photo
    // (layer, score, step, tolerance relative to the largest gradient, elements sampled)
    // The scores are float32: the error of a central difference is about (rounding of a
    // score near 10) / 2h, plus what kinks inside the step add. The default layer's head is
    // pool + dense: linear in the activations for the logit, smooth for the probability, so
    // a large step only cuts rounding noise. The earlier layer's head is piecewise linear
    // (ReLU6 in blocks 14, 15 and the head); measured with central differences alone on 120
    // elements of this photo, h = 0.005 / 0.02 / 0.05 / 0.1 / 0.2 give 1.5e-2 / 5.5e-3 /
    // 2.8e-3 / 4.7e-3 / 6.3e-3 (noise falls as 1/h, then kinks take over; element 1599 sits
    // on a kink: slopes 2.91e-3 right, 3.0e-3 left, gradient 2.91e-3), hence the fallbacks.
    let cases = [
        (HEAD, ScoreKind::Logit, 0.5f32, 1e-3f32, 150),
        (HEAD, ScoreKind::Prob, 0.25, 5e-3, 150),
        (EARLY, ScoreKind::Logit, 0.05, 1e-2, 100),
        (EARLY, ScoreKind::Prob, 0.05, 1e-2, 100),
    ];
    for (tensor, kind, h, tol, n) in cases {
        let mut ex = explainer(&layer(if tensor == HEAD { None } else { Some(tensor) }), kind);
        let body = ex.body(x.view()).expect("body");
        let err = finite_differences(&mut ex, &body, &seed, h, tol, n);
        eprintln!("finite differences {tensor} {kind} h={h}, {n} elements: relative max difference {err:.2e}");
        assert!(err < tol, "{tensor} {kind}: finite differences disagree by {err:.2e} (relative) > {tol}");
    }
}

#[test]
fn contrastive_seed_is_the_difference_of_one_hot_gradients() {
    let (a, b) = (285, 282); // Egyptian cat vs tiger cat
    let mut ex = explainer(&layer(Some(EARLY)), ScoreKind::Logit);
    let body = ex.body(photo("samples/tabby/chelsea.png").view()).expect("body");
    let ga = gradient(&mut ex, &body, &one_hot(&[(a, 1.0)]));
    let gb = gradient(&mut ex, &body, &one_hot(&[(b, 1.0)]));
    let contrast = gradient(&mut ex, &body, &one_hot(&[(a, 1.0), (b, -1.0)]));
    let err = relative(&contrast, &(&ga - &gb));
    eprintln!("contrastive vs difference of one-hot gradients: relative {err:.2e}");
    assert!(err < 1e-5, "the head is not linear in the seed: relative difference {err:.2e}");
}

#[test]
fn head_scores_for_a_one_hot_seed_are_the_model_logits() {
    for tensor in [None, Some(EARLY)] {
        let mut ex = explainer(&layer(tensor), ScoreKind::Logit);
        for rel in ["samples/espresso/coffee.png", "samples/tabby/chelsea.png"] {
            let body = ex.body(photo(rel).view()).expect("body");
            let top = body.output.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
            let side: Vec<_> = body.side.iter().map(|s| s.view()).collect();
            let head = ex.head(body.activation.view(), &side, one_hot(&[(top, 1.0)]).view()).expect("head");
            let err = common::max_abs_diff(&format!("{rel} head scores vs body logits"), &head.scores, &body.output);
            eprintln!("{rel} {}: head scores vs body logits max abs {err:.2e}", tensor.unwrap_or(HEAD));
            assert!(err <= 1e-4, "{rel}: the head's scores differ from the model's logits by {err:.2e}");
        }
    }
}

/// torch's legacy exporter writes "same" padding as a Pad whose pads are computed by a small
/// subgraph of constants (Concat, Reshape, Slice, Transpose, Cast), not an initializer; the
/// gradient through it must still be a crop. Without this, no layer before the bundled
/// model's last depthwise Conv could be explained.
#[test]
fn pad_with_pads_computed_in_the_graph() {
    let t = Tiny::new(17)
        .input("x", &[-1, 2, 4])
        .init_i64("p1", &[3], &[0, 1, -1])
        .init_i64("p2", &[3], &[0, 2, 1])
        .node("Concat", &["p1", "p2"], &["pads"], vec![attrs::int("axis", 0)])
        .node("Pad", &["x", "pads"], &["p"], vec![attrs::string("mode", "constant")])
        .node("Mul", &["p", "p"], &["t"], vec![])
        .node("Flatten", &["t"], &["y"], vec![attrs::int("axis", 1)])
        .output("y", &[-1, 20]);
    let a = analyse(t.build(), "x", "y", &[1, 2, 4]).expect("analyse");
    let x = array(&[1, 2, 4], 7, 0.05);
    let c = fd_check(&a, "x", ScoreKind::Logit, &x, None, 1e-2, 100);
    assert!(c.max_grad > 1e-6 && c.relative() < 2e-3, "Pad with computed pads: {c:?}");
}

#[test]
fn reference_arrays_stay_small() {
    let total: u64 = std::fs::read_dir(reference_dir()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    assert!(total < 1_500_000, "tests/data/reference/gradients holds {total} bytes; keep it under 1.5 MB");
    assert!(Path::new(&reference_dir().join("index.json")).is_file());
}
