//! The contract of `camscope export` (README, "The export contract"): one ONNX graph with
//! inputs `input` and `seed` [N, classes] and outputs `scores`, `activations`, `gradients`,
//! checked from outside camscope by `scripts/check_export.py` (onnx.checker with full_check,
//! names, dims, a run in ONNX Runtime's Python API, scores against the original model), and
//! from inside by running the written file through camscope's own session and comparing it
//! with the body + head graphs the explainer uses.
//!
//! The Python packages come from `scripts/setup-pycheck` (run by `scripts/test`) in
//! `.deps/pycheck`; without them these tests fail and say so, they never pass silently.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use camscope::engine::explainer::Explainer;
use camscope::engine::{Device, GraphSession, LoadedModel, SessionOptions};
use camscope::grad::ScoreKind;
use camscope::imaging;
use camscope::onnx::attrs;
use common::onnx_build::Tiny;
use common::{bundled_model, camscope, one_line_error, root, sample};
use ndarray::{Array2, ArrayD, Axis};

const HEAD: &str = "/_swish_1/Clip_output_0";
const EARLY: &str = "/_blocks.13/Add_output_0";

fn cpu() -> SessionOptions {
    SessionOptions { device: Device::Cpu, threads: Some(1), ..SessionOptions::default() }
}

/// Where `scripts/setup-pycheck` installs the checker's packages under `root`, or why the
/// tests cannot run: one line naming the command that fixes it.
fn pycheck_dir(root: &Path) -> Result<PathBuf, String> {
    let dir = root.join(".deps/pycheck");
    if dir.join(".installed").is_file() {
        Ok(dir)
    } else {
        Err(format!(
            "{}: missing; run scripts/setup-pycheck (scripts/test runs it) to install onnx, onnxruntime, numpy and pillow for scripts/check_export.py",
            dir.display()
        ))
    }
}

/// Run `scripts/check_export.py` on `file` and return its JSON report, failing the test
/// (with the report) unless every check passed.
fn python_check(file: &Path, extra: &[&str]) -> serde_json::Value {
    let dir = pycheck_dir(&root()).unwrap_or_else(|e| panic!("{e}"));
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .arg(root().join("scripts/check_export.py"))
        .arg(file)
        .args(extra)
        .env("PYTHONPATH", &dir)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e}; install Python 3 or set PYTHON"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stdout.lines().last().unwrap_or_else(|| panic!("check_export.py printed nothing; stderr: {stderr}"));
    let report: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("check_export.py: {e}: {stdout} {stderr}"));
    assert!(out.status.success() && report["ok"] == true, "check_export.py failed: {report}\n{stderr}");
    report
}

/// `camscope export` into `dir`, returning the written file.
fn export(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let file = dir.join(name);
    let mut all = vec!["export"];
    all.extend_from_slice(args);
    all.extend(["-o", file.to_str().unwrap()]);
    let out = camscope(&all);
    assert!(out.status.success(), "camscope {all:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(file.is_file());
    file
}

fn model_arg() -> String {
    bundled_model().to_string_lossy().into_owned()
}

#[test]
fn exported_logit_graph_passes_the_python_contract_check() {
    let dir = tempfile::tempdir().unwrap();
    let m = model_arg();
    let file = export(dir.path(), "logit.onnx", &[&m, "--score", "logit"]);
    let photo = sample("tabby/chelsea.png");
    let r = python_check(&file, &[photo.to_str().unwrap(), "--model", &m]);
    assert_eq!(r["checker"], "passed");
    assert_eq!(r["layer"], HEAD);
    assert_eq!(r["score"], "logit");
    assert_eq!(r["relation"], "scores = output");
    assert_eq!(r["outputs"]["activations"], serde_json::json!(["N", 1280, 7, 7]));
    assert_eq!(r["outputs"]["gradients"], serde_json::json!(["N", 1280, 7, 7]));
    assert_eq!(r["inputs"]["seed"], serde_json::json!(["N", 1000]));
    assert_eq!(r["top1"], 285, "Chelsea is an Egyptian cat to this model");
}

#[test]
fn exported_prob_graph_passes_the_python_contract_check() {
    let dir = tempfile::tempdir().unwrap();
    let m = model_arg();
    let file = export(dir.path(), "prob.onnx", &[&m, "--score", "prob"]);
    let photo = sample("espresso/coffee.png");
    let r = python_check(&file, &[photo.to_str().unwrap(), "--model", &m]);
    assert_eq!(r["score"], "prob");
    assert_eq!(r["relation"], "scores = softmax(output)");
    assert_eq!(r["top1"], 967);
}

#[test]
fn exported_earlier_layer_passes_the_python_contract_check() {
    let dir = tempfile::tempdir().unwrap();
    let m = model_arg();
    let file = export(dir.path(), "early.onnx", &[&m, "--layer", EARLY]);
    let r = python_check(&file, &["--model", &m]);
    assert_eq!(r["layer"], EARLY);
    assert_eq!(r["outputs"]["gradients"], serde_json::json!(["N", 192, 7, 7]));
}

/// What tf2onnx makes of a small Keras classifier: NHWC input, one Transpose to NCHW, a
/// Conv, and a Dense(softmax) head as Relu → GlobalAveragePool → Squeeze → MatMul → Add →
/// Softmax.
fn nhwc_model(dir: &Path) -> PathBuf {
    let v = |n: usize, s: u64| common::onnx_build::values(n, s, 0.0);
    let t = Tiny::new(17)
        .input("image", &[-1, 16, 16, 3])
        .init("conv/kernel", &[4, 3, 3, 3], &v(108, 1))
        .init("conv/bias", &[4], &v(4, 2))
        .init("dense/kernel", &[4, 5], &v(20, 3))
        .init("dense/bias", &[5], &v(5, 4))
        .init_i64("axes", &[2], &[2, 3])
        .node("Transpose", &["image"], &["nchw"], vec![attrs::ints("perm", &[0, 3, 1, 2])])
        .node("Conv", &["nchw", "conv/kernel", "conv/bias"], &["conv"], vec![attrs::ints("pads", &[1, 1, 1, 1])])
        .node("Relu", &["conv"], &["relu"], vec![])
        .node("GlobalAveragePool", &["relu"], &["pool"], vec![])
        .node("Squeeze", &["pool", "axes"], &["flat"], vec![])
        .node("MatMul", &["flat", "dense/kernel"], &["mm"], vec![])
        .node("Add", &["mm", "dense/bias"], &["logits"], vec![])
        .node("Softmax", &["logits"], &["probs"], vec![attrs::int("axis", -1)])
        .output("probs", &[-1, 5]);
    let path = dir.join("keras_nhwc.onnx");
    camscope::onnx::write_model(&path, &t.build()).unwrap();
    path
}

#[test]
fn exported_nhwc_graph_passes_the_python_contract_check() {
    let dir = tempfile::tempdir().unwrap();
    let m = nhwc_model(dir.path());
    let m = m.to_str().unwrap();
    for score in ["logit", "prob"] {
        let file = export(dir.path(), &format!("nhwc_{score}.onnx"), &[m, "--score", score]);
        let photo = sample("dahlia/flower.jpg");
        let r = python_check(&file, &[photo.to_str().unwrap(), "--model", m]);
        assert_eq!(r["layout"], "NHWC");
        assert_eq!(r["layer"], "relu");
        assert_eq!(r["inputs"]["input"], serde_json::json!(["N", 16, 16, 3]), "the input is renamed to `input`");
        assert_eq!(r["outputs"]["gradients"], serde_json::json!(["N", 4, 16, 16]));
        let want = if score == "logit" { "softmax(scores) = output" } else { "scores = output" };
        assert_eq!(r["relation"], want);
    }
}

fn model() -> &'static LoadedModel {
    static MODEL: OnceLock<LoadedModel> = OnceLock::new();
    MODEL.get_or_init(|| LoadedModel::open(&bundled_model(), None, &cpu()).expect("bundled model loads"))
}

/// The exported file, run by camscope's own session, gives what the explainer's body and
/// head give: same scores, activations and gradients, for a batch of two photos with a
/// different seed per row (one-hot, and contrastive).
#[test]
fn exported_graph_equals_the_explainers_body_and_head() {
    let dir = tempfile::tempdir().unwrap();
    let m = model_arg();
    let photos: Vec<_> = ["espresso/coffee.png", "tabby/chelsea.png"]
        .iter()
        .map(|p| imaging::load_tensor(&sample(p), &model().card.input).unwrap())
        .collect();
    let views: Vec<_> = photos.iter().map(|p| p.view()).collect();
    let batch = imaging::batch(&views).into_dyn();
    let mut seed = Array2::<f32>::zeros((2, 1000));
    seed[[0, 967]] = 1.0;
    seed[[1, 285]] = 1.0;
    seed[[1, 282]] = -1.0;
    for (layer, kind) in [(None, ScoreKind::Logit), (Some(EARLY), ScoreKind::Prob)] {
        let mut args = vec![m.as_str(), "--score", if kind == ScoreKind::Logit { "logit" } else { "prob" }];
        if let Some(l) = layer {
            args.extend(["--layer", l]);
        }
        let file = export(dir.path(), &format!("{kind}.onnx"), &args);
        let mut s = GraphSession::from_file(&file, &cpu()).expect("exported graph loads");
        let got = s
            .run(&[("input", batch.view()), ("seed", seed.view().into_dyn())], &["scores", "activations", "gradients"])
            .expect("exported graph runs");

        let target = model().analysis.resolve_layer(layer).unwrap();
        let mut ex = Explainer::new(&model().analysis, &model().path, &target, kind, false, &cpu()).unwrap();
        let body = ex.body(batch.view()).unwrap();
        let side: Vec<_> = body.side.iter().map(|a| a.view()).collect();
        let head = ex.head(body.activation.view(), &side, seed.view()).unwrap();
        let want: [&ArrayD<f32>; 3] = [&head.scores, &body.activation, &head.gradient];
        for ((name, g), w) in ["scores", "activations", "gradients"].iter().zip(&got).zip(want) {
            let scale = common::max_abs(&format!("{kind} {name}"), w);
            let err = common::max_abs_diff(&format!("{kind} {name}"), g, w);
            eprintln!("{} {kind} {name}: max abs {err:.2e} (max |value| {scale:.2e})", target.tensor);
            assert!(err <= 1e-5 * scale, "{kind} {name}: export and body+head differ by {err:.2e}");
        }
        // Rows stay apart: the second row's gradient is its own contrast, not the first's.
        let row = |a: &ArrayD<f32>, i: usize| a.index_axis(Axis(0), i).to_owned();
        assert_ne!(row(&got[2], 0), row(&got[2], 1));
    }
}

fn sha(path: &Path) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(path).unwrap()).to_vec()
}

#[test]
fn export_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.onnx");
    std::fs::write(&out, b"precious").unwrap();
    let o = out.to_str().unwrap();
    let m = model_arg();
    let err = one_line_error(&camscope(&["export", &m, "-o", o]));
    assert!(err.contains("already exists") && err.contains("--force") && err.contains(o), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    let forced: Output = camscope(&["export", &m, "-o", o, "--force"]);
    assert!(forced.status.success(), "{}", String::from_utf8_lossy(&forced.stderr));
    let written = camscope::onnx::read_model(&out).expect("--force wrote a model");
    let outputs: Vec<_> = written.graph.unwrap().output.into_iter().filter_map(|v| v.name).collect();
    assert_eq!(outputs, ["scores", "activations", "gradients"]);
}

#[test]
fn export_refuses_to_write_over_its_input_model() {
    // A copy: if the refusal broke, the bundled model must not be the casualty.
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.onnx");
    std::fs::copy(bundled_model(), &model).unwrap();
    let before = sha(&model);
    let m = model.to_str().unwrap();
    let err = one_line_error(&camscope(&["export", m, "-o", m]));
    assert!(err.contains("already exists"), "{err}");
    // Through another spelling of the same path, and with --force.
    let other = dir.path().join(".").join("model.onnx");
    let err = one_line_error(&camscope(&["export", m, "-o", other.to_str().unwrap(), "--force"]));
    assert!(err.contains("is the input model"), "{err}");
    assert_eq!(sha(&model), before, "the input model was modified");
}

/// The checker is not vacuous: the original model (no seed, no gradients) fails it.
#[test]
fn the_python_check_rejects_a_graph_without_the_contract() {
    let dir = pycheck_dir(&root()).unwrap_or_else(|e| panic!("{e}"));
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .arg(root().join("scripts/check_export.py"))
        .arg(bundled_model())
        .env("PYTHONPATH", &dir)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert_eq!(report["ok"], false);
    assert!(report["failures"][0].as_str().unwrap().contains("expected ['input', 'seed']"), "{report}");
}

#[test]
fn missing_python_packages_are_an_error_naming_the_setup_script() {
    let dir = tempfile::tempdir().unwrap();
    let err = pycheck_dir(dir.path()).unwrap_err();
    assert!(err.contains("scripts/setup-pycheck") && err.contains(".deps/pycheck"), "{err}");
}
