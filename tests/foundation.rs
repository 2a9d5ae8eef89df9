//! Issue 2: the bundled model through real ONNX Runtime, preprocessing equal to the export
//! script's, and one clear line for every bad input.

mod common;

use camscope::engine::{Classifier, Device, LoadedModel, SessionOptions};
use camscope::imaging;
use camscope::scores::ClassScores;
use common::*;
use std::path::Path;

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
    let err = max_abs_diff("preprocessed chelsea.png", got.as_slice().unwrap(), &want);
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
    let err = max_abs_diff("preprocessed grace_hopper.jpg", got, &want);
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
    // A file that is no shared library at all.
    let out = camscope(&["explain", "--ort-lib", "tests/data/bad/garbage.onnx", "samples/espresso/coffee.png"]);
    let line = one_line_error(&out);
    assert!(line.contains("garbage.onnx") && line.contains("scripts/setup-ort"), "{line}");
}

/// The C library this test process itself runs on: a real shared library that loads, but has no ONNX Runtime API.
fn libc_path() -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps (Linux)");
    let path = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.rsplit('/').next().is_some_and(|f| f.starts_with("libc.so") || f.starts_with("libc-")))
        .expect("libc among the mapped files");
    assert!(Path::new(path).is_file(), "{path}");
    path.to_owned()
}

#[test]
fn a_real_shared_library_that_is_not_onnx_runtime_is_one_line() {
    let lib = libc_path();
    // Through --ort-lib, and through ORT_DYLIB_PATH (the search order's second place).
    let out = camscope(&["explain", "--ort-lib", &lib, "samples/espresso/coffee.png"]);
    let line = one_line_error(&out);
    assert!(line.contains(&lib) && line.contains("not an ONNX Runtime library"), "{line}");
    assert!(line.contains("scripts/setup-ort"), "{line}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_camscope"))
        .args(["explain", "samples/espresso/coffee.png"])
        .env("ORT_DYLIB_PATH", &lib)
        .current_dir(root())
        .output()
        .unwrap();
    let line = one_line_error(&out);
    assert!(line.contains(&lib) && line.contains("not an ONNX Runtime library"), "{line}");
}

/// The shared comparison of tests/common refuses what a bare `fold(0.0, f32::max)` lets through.
#[test]
fn comparisons_refuse_other_shapes_non_finite_values_and_empty_arrays() {
    let a = ndarray::Array2::<f32>::zeros((2, 3));
    assert_eq!(max_abs_diff("same", &a, &a), 0.0);
    let caught = |f: fn()| std::panic::catch_unwind(f).is_err();
    assert!(caught(|| {
        max_abs_diff("shape", &ndarray::Array2::<f32>::zeros((2, 3)), &ndarray::Array2::<f32>::zeros((3, 2)));
    }));
    assert!(caught(|| {
        max_abs_diff("nan", &vec![0.0, f32::NAN], &vec![0.0, 0.0]);
    }));
    assert!(caught(|| {
        max_abs_diff("inf", &vec![0.0, 0.0], &vec![f32::INFINITY, 0.0]);
    }));
    assert!(caught(|| {
        max_abs_diff("empty", &Vec::<f32>::new(), &Vec::<f32>::new());
    }));
    assert!(caught(|| {
        max_rel_diff("zero reference", &vec![1.0], &vec![0.0]);
    }));
    assert_eq!(max_rel_diff("relative", &vec![1.0, 2.5], &vec![1.0, 2.0]), 0.25);
}
