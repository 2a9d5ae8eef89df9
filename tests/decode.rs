//! Decoding photos honestly (issue 11): EXIF orientation as Pillow's `ImageOps.exif_transpose`
//! applies it, for all eight orientations and the formats that carry one; `--ignore-exif` and
//! the card's `ignore_exif`; truncated JPEGs refused (or used with a warning in every
//! output); and a message that names the problem and the fix for an image over the pixel
//! limit, a folder, a looping link, a model folder and a float TIFF. Fixtures:
//! `scripts/gen_exif_fixtures.py` (Pillow 13.0.0).

mod common;

use std::path::{Path, PathBuf};

use camscope::imaging::{self, DecodeOptions};
use camscope::model::{CardSource, ModelCard};
use common::*;
use image::RgbImage;
use serde_json::Value;

/// Largest difference (0..255) between camscope's JPEG decode (zune-jpeg, through image
/// 0.25) and Pillow's (libjpeg-turbo 4:2:0 decode) of the same file after the same transpose:
/// the decoders' chroma upsampling and IDCT rounding differ. Measured on these fixtures: 3 to
/// 7 (7 for orientation 5), mean 0.35-0.39 per channel value, identical with and without the
/// transpose. A wrong orientation differs by ~30 on average and ~200 at most.
const JPEG_DECODER_TOLERANCE: u8 = 8;
/// Mean difference allowed over all channel values (measured: at most 0.39).
const JPEG_DECODER_MEAN_TOLERANCE: f64 = 0.5;

fn exif(rel: &str) -> PathBuf {
    data(&format!("exif/{rel}"))
}

fn png(path: &Path) -> RgbImage {
    image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8()
}

/// The largest per-channel difference, after checking the sizes agree.
fn max_diff(got: &RgbImage, want: &RgbImage, what: &str) -> u8 {
    assert_eq!(got.dimensions(), want.dimensions(), "{what}: size");
    got.as_raw().iter().zip(want.as_raw()).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0)
}

/// The mean per-channel difference of two images of one size.
fn mean_diff(got: &RgbImage, want: &RgbImage) -> f64 {
    let sum: f64 = got.as_raw().iter().zip(want.as_raw()).map(|(a, b)| f64::from(a.abs_diff(*b))).sum();
    sum / got.as_raw().len() as f64
}

fn decode(path: &Path, exif: bool) -> RgbImage {
    imaging::load_rgb(path, &DecodeOptions { exif, ..DecodeOptions::default() }).unwrap()
}

#[test]
fn all_eight_jpeg_orientations_match_pillows_exif_transpose() {
    let mut worst = 0;
    for n in 1..=8 {
        let jpg = exif(&format!("orient-{n}.jpg"));
        let upright = png(&exif(&format!("orient-{n}.upright.png")));
        // Every fixture shows the same 45x30 crop once upright.
        assert_eq!(upright.dimensions(), (45, 30), "orientation {n}");
        let got = decode(&jpg, true);
        let (d, mean) = (max_diff(&got, &upright, &format!("orientation {n}")), mean_diff(&got, &upright));
        assert!(d <= JPEG_DECODER_TOLERANCE, "orientation {n}: differs from Pillow by {d}");
        assert!(mean <= JPEG_DECODER_MEAN_TOLERANCE, "orientation {n}: differs from Pillow by {mean} on average");
        worst = worst.max(d);
        // As stored: what --ignore-exif and `ignore_exif = true` give.
        let raw = png(&exif(&format!("orient-{n}.raw.png")));
        let got = decode(&jpg, false);
        let (d, mean) = (max_diff(&got, &raw, &format!("orientation {n} ignored")), mean_diff(&got, &raw));
        assert!(d <= JPEG_DECODER_TOLERANCE, "orientation {n} ignored: differs from Pillow by {d}");
        assert!(mean <= JPEG_DECODER_MEAN_TOLERANCE, "orientation {n} ignored: differs by {mean} on average");
    }
    eprintln!("largest JPEG decoder difference from Pillow: {worst}");
}

#[test]
fn png_webp_and_tiff_orientations_are_applied_exactly() {
    let upright = png(&exif("upright.png"));
    for (file, stored) in [("png-6.png", (30, 45)), ("webp-8.webp", (30, 45)), ("tiff-3.tif", (45, 30))] {
        assert_eq!(decode(&exif(file), true), upright, "{file}");
        assert_eq!(decode(&exif(file), false).dimensions(), stored, "{file} as stored");
    }
}

#[test]
fn the_cards_ignore_exif_reads_pixels_as_stored() {
    let card = std::fs::read_to_string(root().join("models/efficientnet_lite0.toml")).unwrap();
    let card = card.replacen("[input]", "[input]\nignore_exif = true", 1);
    let card = ModelCard::parse(&card, Path::new("raw.toml"), CardSource::Metadata).unwrap();
    let opts = card.input.decode_options();
    assert!(!opts.exif);
    let got = imaging::load_rgb(&exif("orient-6.jpg"), &opts).unwrap();
    assert_eq!(got.dimensions(), (30, 45), "as stored, not turned upright");
}

#[test]
fn the_triage_cache_keeps_scores_of_each_orientation_setting_apart() {
    let loaded = ModelCard::read(&root().join("models/efficientnet_lite0.toml")).unwrap();
    let model = |card: ModelCard| camscope::triage::ScanModel {
        path: bundled_model(),
        card,
        input: "input".into(),
        output: "logits".into(),
        classes: 1000,
        fixed_batch: false,
        head: Default::default(),
    };
    let key = |card: ModelCard| camscope::triage::model_key(&model(card)).unwrap().0;
    let mut raw = loaded.clone();
    raw.input.ignore_exif = true;
    let mut lenient = loaded.clone();
    lenient.input.allow_truncated = true;
    assert_eq!(key(loaded.clone()), key(loaded.clone()));
    assert_ne!(key(loaded.clone()), key(raw), "--ignore-exif scores other pixels");
    assert_ne!(key(loaded), key(lenient), "--allow-truncated scores files a strict run refuses");
}

fn explain_json(args: &[&str]) -> (Value, String) {
    let out = camscope(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (v.as_array().unwrap()[0].clone(), stderr)
}

#[test]
fn a_phone_photo_stored_sideways_is_classified_as_the_upright_one() {
    let upright = exif("espresso-upright.jpg");
    let rotated = exif("espresso-rot6.jpg");
    let (up, _) = explain_json(&["explain", "--json", upright.to_str().unwrap()]);
    let (rot, _) = explain_json(&["explain", "--json", rotated.to_str().unwrap()]);
    let (raw, _) = explain_json(&["explain", "--json", "--ignore-exif", rotated.to_str().unwrap()]);
    let top1 =
        |e: &Value| (e["top"][0]["label"].as_str().unwrap().to_owned(), e["top"][0]["probability"].as_f64().unwrap());
    assert_eq!(top1(&up).0, "espresso");
    assert_eq!(top1(&rot).0, top1(&up).0);
    assert!((top1(&rot).1 - top1(&up).1).abs() < 0.05, "{:?} vs {:?}", top1(&rot), top1(&up));
    // --ignore-exif feeds the sideways pixels: other scores.
    assert!((top1(&raw).1 - top1(&rot).1).abs() > 1e-3, "{:?} vs {:?}", top1(&raw), top1(&rot));
}

/// A copy of a sample JPEG cut in half, in a temporary folder.
fn truncated_jpeg(dir: &Path) -> PathBuf {
    let whole = std::fs::read(sample("palace/china.jpg")).unwrap();
    let cut = dir.join("half.jpg");
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
    cut
}

#[test]
fn a_truncated_jpeg_is_refused_with_the_option_that_accepts_it() {
    let dir = tempfile::tempdir().unwrap();
    let cut = truncated_jpeg(dir.path());
    let line = one_line_error(&camscope(&["explain", cut.to_str().unwrap()]));
    assert!(line.contains("half.jpg: truncated JPEG") && line.contains("--allow-truncated"), "{line}");
}

#[test]
fn an_allowed_truncated_jpeg_warns_on_stderr_in_json_and_in_the_batch_report() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let cut = truncated_jpeg(&images);
    let (e, stderr) = explain_json(&["explain", "--json", "--allow-truncated", cut.to_str().unwrap()]);
    assert!(stderr.contains("camscope: warning: ") && stderr.contains("half.jpg: truncated JPEG"), "{stderr}");
    let warnings = e["warnings"].as_array().expect("a warnings field");
    assert!(warnings[0].as_str().unwrap().contains("truncated JPEG"), "{e}");
    // A whole image has no warnings field at all.
    let (whole, _) = explain_json(&["explain", "--json", "samples/palace/china.jpg"]);
    assert!(whole.get("warnings").is_none(), "{whole}");

    let out = dir.path().join("out");
    let run = |extra: &[&str]| {
        let mut args = vec!["batch", images.to_str().unwrap(), "-o", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        camscope(&args)
    };
    let lenient = run(&["--allow-truncated"]);
    let stderr = String::from_utf8_lossy(&lenient.stderr);
    assert!(lenient.status.success(), "{stderr}");
    assert!(stderr.contains("warning: ") && stderr.contains("truncated JPEG"), "{stderr}");
    let report: Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert!(report["images"][0]["warnings"][0].as_str().unwrap().contains("truncated JPEG"), "{report}");
    // A later strict run does not resume from the lenient one's entry: it refuses the file.
    let strict = run(&[]);
    let report: Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert!(!strict.status.success(), "{}", String::from_utf8_lossy(&strict.stderr));
    assert!(report["unreadable"][0]["error"].as_str().unwrap().contains("truncated JPEG"), "{report}");
}

#[test]
fn an_image_over_the_pixel_limit_names_its_size_and_the_option() {
    let line = one_line_error(&camscope(&["explain", "--max-pixels", "1000", "samples/palace/china.jpg"]));
    assert!(line.contains("china.jpg: image is 640x427 (273280 pixels), over the limit of 1000"), "{line}");
    assert!(line.contains("--max-pixels 273280") && !line.contains("corrupt"), "{line}");
}

#[test]
fn a_folder_or_a_looping_link_given_as_an_image_says_what_it_is() {
    let line = one_line_error(&camscope(&["explain", "samples/tabby"]));
    assert!(line.contains("samples/tabby: is a folder") && line.contains("batch"), "{line}");
    #[cfg(unix)]
    {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("loop.jpg");
        std::os::unix::fs::symlink(&a, &a).unwrap();
        let line = one_line_error(&camscope(&["explain", a.to_str().unwrap()]));
        assert!(line.contains("loop.jpg: a symbolic link that loops") && !line.contains("permissions"), "{line}");
    }
}

#[test]
fn a_model_folder_says_to_pass_the_onnx_file_in_it() {
    let line = one_line_error(&camscope(&["explain", "--model", "models", "samples/tabby/chelsea.png"]));
    assert!(line.contains("models: is a folder, not a model"), "{line}");
    assert!(line.contains("--model models/efficientnet_lite0.onnx"), "{line}");
}

#[test]
fn a_float_tiff_says_to_convert_to_8_or_16_bit() {
    let line = one_line_error(&camscope(&["explain", "tests/data/bad/float32.tif"]));
    assert!(line.contains("float32.tif: unsupported TIFF sample format") && line.contains("8- or 16-bit"), "{line}");
}

/// Triage with `--allow-truncated`: the warning is on stderr, in triage.json and in
/// summary.txt, and survives a rerun (warned results are never cached, so they come back).
#[test]
fn an_allowed_truncated_jpeg_warns_in_every_triage_output_run_after_run() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("data/palace");
    std::fs::create_dir_all(&images).unwrap();
    truncated_jpeg(&images);
    std::fs::copy(sample("palace/china.jpg"), images.join("whole.jpg")).unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("out"));
    for run in ["first", "rerun"] {
        let r = std::process::Command::new(env!("CARGO_BIN_EXE_camscope"))
            .args(["triage", data.to_str().unwrap(), "-o", out.to_str().unwrap(), "--allow-truncated"])
            .current_dir(root())
            .env("CAMSCOPE_CACHE_DIR", dir.path().join("cache"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert!(r.status.success(), "{run}: {stderr}");
        assert!(
            stderr.contains("camscope: warning: ") && stderr.contains("half.jpg: truncated JPEG"),
            "{run}: {stderr}"
        );
        let t: Value = serde_json::from_slice(&std::fs::read(out.join("triage.json")).unwrap()).unwrap();
        let w = t["warnings"].as_array().expect("a warnings list");
        assert_eq!(w.len(), 1, "{run}: only the truncated file: {w:?}");
        assert_eq!(w[0][0], "palace/half.jpg");
        assert!(w[0][1].as_str().unwrap().contains("truncated JPEG"));
        let summary = std::fs::read_to_string(out.join("summary.txt")).unwrap();
        assert!(summary.contains("warning: ") && summary.contains("half.jpg"), "{run}: {summary}");
    }
}
