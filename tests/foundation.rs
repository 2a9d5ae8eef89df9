//! Issue 2: the bundled model through real ONNX Runtime, preprocessing equal to the export
//! script's, and one clear line for every bad input.

mod common;

use camscope::engine::{Classifier, Device, LoadedModel, SessionOptions};
use camscope::imaging;
use camscope::scores::ClassScores;
use common::*;

fn cpu() -> SessionOptions {
    SessionOptions { device: Device::Cpu, ..SessionOptions::default() }
}

fn model() -> LoadedModel {
    LoadedModel::open(&bundled_model(), None, &cpu()).expect("bundled model loads")
}

fn classify(m: &LoadedModel, rel: &str) -> ClassScores {
    let mut c = Classifier::new(m, &cpu()).unwrap();
    let x = imaging::load_tensor(&sample(rel), &m.card.input).unwrap();
    let out = c.run(x.insert_axis(ndarray::Axis(0)).view()).unwrap();
    ClassScores::from_output(out.row(0).as_slice().unwrap(), m.head)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn cat_photo_top1_is_a_cat_class() {
    let m = model();
    let top = classify(&m, "tabby/chelsea.png").argmax();
    // ImageNet's domestic cats: tabby, tiger cat, Persian, Siamese, Egyptian cat.
    assert!((281..=285).contains(&top), "top-1 of the cat photo is class {top}");
    assert!(m.card.labels().name(top).contains("cat") || top == 281);
}

#[test]
fn espresso_photo_is_confidently_espresso() {
    let m = model();
    let p = classify(&m, "espresso/coffee.png").top_k(1, &m.card.labels())[0].clone();
    assert_eq!((p.index, p.label.as_str()), (967, "espresso"));
    assert!(p.probability > 0.9, "{p:?}");
}

#[test]
fn preprocessing_matches_export_script_png() {
    let c = model();
    let (shape, want) = read_npy_f32(&data("preprocessed_chelsea.npy"));
    assert_eq!(shape, vec![1, 3, 224, 224]);
    let got = imaging::load_tensor(&sample("tabby/chelsea.png"), &c.card.input).unwrap();
    assert_eq!(got.shape(), &[3, 224, 224]);
    let err = max_abs_diff(got.as_slice().unwrap(), &want);
    assert!(err <= 1e-5, "max abs diff {err} vs the export script's tensor");
}

#[test]
fn preprocessing_matches_export_script_jpeg_within_decoder_rounding() {
    // JPEG decoders differ by a few grey levels after IDCT and chroma upsampling
    // (libjpeg-turbo in Pillow vs zune-jpeg here; measured: max 3 levels, mean 0.17). One
    // level is 1/128 after normalisation. PNG above is exact.
    let c = model();
    let (_, want) = read_npy_f32(&data("preprocessed_grace_hopper.npy"));
    let got = imaging::load_tensor(&sample("military_uniform/grace_hopper.jpg"), &c.card.input).unwrap();
    let got = got.as_slice().unwrap();
    let err = max_abs_diff(got, &want);
    let mean: f32 = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).sum::<f32>() / got.len() as f32;
    assert!(err <= 4.0 / 128.0 + 1e-6 && mean < 0.5 / 128.0, "max {err}, mean {mean}");
}

#[test]
fn explain_prints_top_k_for_a_sample() {
    let out = camscope(&["explain", "samples/espresso/coffee.png", "--top", "3"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "samples/espresso/coffee.png", "{stdout}");
    assert!(lines[1].contains("espresso") && lines[1].contains('%') && lines[1].contains('*'), "{stdout}");
    assert_eq!(lines.iter().filter(|l| l.contains("% ")).count(), 3, "{stdout}");
    assert!(lines[4].contains("gradcam of espresso"), "{stdout}");
}

fn assert_error(args: &[&str], must_contain: &[&str]) {
    let line = one_line_error(&camscope(args));
    for s in must_contain {
        assert!(line.contains(s), "error {line:?} lacks {s:?}");
    }
}

#[test]
fn missing_image_is_one_line() {
    assert_error(&["explain", "samples/nope.png"], &["samples/nope.png", "no such file"]);
}

#[test]
fn corrupt_image_is_one_line() {
    assert_error(&["explain", "tests/data/bad/truncated.png"], &["truncated.png", "corrupt or truncated"]);
}

#[test]
fn non_image_file_is_one_line() {
    assert_error(&["explain", "tests/data/bad/notes.png"], &["notes.png", "not an image", "use PNG"]);
    assert_error(&["explain", "tests/data/bad/empty.jpg"], &["empty.jpg", "empty"]);
}

#[test]
fn missing_model_is_one_line() {
    assert_error(
        &["explain", "--model", "models/missing.onnx", "samples/espresso/coffee.png"],
        &["models/missing.onnx", "--model"],
    );
}

#[test]
fn corrupt_models_are_one_line() {
    for m in ["tests/data/bad/garbage.onnx", "tests/data/bad/truncated.onnx"] {
        assert_error(&["explain", "--model", m, "samples/espresso/coffee.png"], &[m, "not an ONNX model", "re-export"]);
    }
}

#[test]
fn card_disagreeing_with_model_is_one_line() {
    assert_error(
        &["explain", "--card", "tests/data/bad/wrong_size.toml", "samples/espresso/coffee.png"],
        &["wrong_size.toml", "256x256", "[?, 3, 224, 224]", "height"],
    );
}

#[test]
fn missing_onnxruntime_is_one_line_with_install_command() {
    assert_error(
        &["explain", "--ort-lib", "/nonexistent/libonnxruntime.so", "samples/espresso/coffee.png"],
        &["/nonexistent/libonnxruntime.so", "scripts/setup-ort"],
    );
    // Not ONNX Runtime at all: a real shared library without its API.
    let out = camscope(&["explain", "--ort-lib", "tests/data/bad/garbage.onnx", "samples/espresso/coffee.png"]);
    let line = one_line_error(&out);
    assert!(line.contains("garbage.onnx") && line.contains("scripts/setup-ort"), "{line}");
}
