//! `explain` and `batch` end to end through the real binary: options, JSON, PNG output,
//! contrastive and probability scores, metrics, and every bad input's one-line error.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

fn json(args: &[&str]) -> Value {
    let out = camscope(args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn explain_json_has_the_whole_explanation() {
    let v = json(&["explain", "samples/espresso/coffee.png", "--json", "--top", "3"]);
    let e = &v.as_array().unwrap()[0];
    assert_eq!(e["image"], "samples/espresso/coffee.png");
    assert_eq!(e["layer"], "/_swish_1/Clip_output_0");
    assert_eq!((e["method"].as_str(), e["score"].as_str()), (Some("gradcam"), Some("logit")));
    assert_eq!(e["target"]["class"]["index"], 967);
    assert_eq!(e["target"]["class"]["label"], "espresso");
    assert!(e["target"]["class"]["logit"].as_f64().unwrap() > 5.0);
    assert_eq!(e["top"].as_array().unwrap().len(), 3);
    assert_eq!(e["device"], "CPU");
    assert_eq!(e["map_status"], "ok");
    let map = e["map"].as_array().unwrap();
    assert_eq!(map.len(), 7);
    let values: Vec<f64> = map.iter().flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap())).collect();
    assert_eq!(values.len(), 49);
    assert!(values.iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(values.contains(&1.0) && values.contains(&0.0));
    for k in ["decode_ms", "body_ms", "head_ms", "map_ms", "render_ms"] {
        assert!(e["timings"][k].as_f64().unwrap() >= 0.0, "{k}");
    }
}

#[test]
fn classes_by_label_synonym_index_and_contrast() {
    let v = json(&[
        "explain",
        "samples/tabby/chelsea.png",
        "--json",
        "-c",
        "tabby cat",
        "-c",
        "285",
        "--versus",
        "tiger cat",
    ]);
    let e = v.as_array().unwrap();
    assert_eq!(e.len(), 2);
    assert_eq!(e[0]["target"]["class"]["index"], 281);
    assert_eq!(e[1]["target"]["class"]["index"], 285);
    assert_eq!(e[0]["target"]["versus"]["index"], 282);
    assert_ne!(e[0]["map"], e[1]["map"], "different classes give different maps");
}

#[test]
fn probability_score_and_metrics() {
    let v = json(&["explain", "samples/espresso/coffee.png", "--json", "--score", "prob", "--metrics"]);
    let e = &v.as_array().unwrap()[0];
    assert_eq!(e["score"], "prob");
    let m = &e["metrics"];
    let (del, ins) = (m["deletion_auc"].as_f64().unwrap(), m["insertion_auc"].as_f64().unwrap());
    assert!((0.0..=1.0).contains(&del) && (0.0..=1.0).contains(&ins), "{m}");
    assert!(ins > del, "for a confident espresso, inserting salient pixels first beats deleting them: {m}");
    assert!((0.0..=100.0).contains(&m["average_drop_pct"].as_f64().unwrap()));
}

#[test]
fn every_method_runs_from_the_command_line() {
    for method in ["gradcam++", "xgradcam", "hirescam", "layercam", "eigencam", "ablationcam", "guided-gradcam"] {
        let v = json(&["explain", "samples/tripod/camera.png", "--json", "--method", method]);
        assert_eq!(v[0]["method"], method);
        assert_eq!(v[0]["map_status"], "ok", "{method}");
    }
}

#[test]
fn writes_png_and_never_overwrites_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.png");
    let o = out.to_str().unwrap();
    let r = camscope(&["explain", "samples/espresso/coffee.png", "-o", o, "--no-show"]);
    assert!(r.status.success());
    let img = image::open(&out).unwrap();
    assert_eq!((img.width(), img.height()), (224, 224));
    let line = one_line_error(&camscope(&["explain", "samples/espresso/coffee.png", "-o", o]));
    assert!(line.contains("o.png") && line.contains("--force"), "{line}");
    assert!(camscope(&["explain", "samples/espresso/coffee.png", "-o", o, "--force", "--no-show"]).status.success());
    // Several images: --out is a folder, files get fresh names.
    let d = dir.path().join("many");
    let r =
        camscope(&["explain", "samples/espresso/coffee.png", "samples/tabby/chelsea.png", "-o", d.to_str().unwrap()]);
    assert!(r.status.success());
    assert!(d.join("coffee.espresso.gradcam.png").is_file() && d.join("chelsea.egyptian_cat.gradcam.png").is_file());
}

#[test]
fn bad_classes_methods_and_options_are_one_line() {
    let line = one_line_error(&camscope(&["explain", "samples/espresso/coffee.png", "-c", "espreso"]));
    assert!(line.contains("espreso") && line.contains("espresso"), "suggests the closest label: {line}");
    let line = one_line_error(&camscope(&["explain", "samples/espresso/coffee.png", "-c", "1000"]));
    assert!(line.contains("1000") && line.contains("out of range"), "{line}");
    let line = one_line_error(&camscope(&["explain", "samples/espresso/coffee.png", "--method", "gradcan"]));
    assert!(line.contains("gradcan") && line.contains("scorecam"), "lists the methods: {line}");
    let line = one_line_error(&camscope(&["explain", "samples/espresso/coffee.png", "--alpha", "2"]));
    assert!(line.contains("--alpha"), "{line}");
    let line = one_line_error(&camscope(&["explain", "samples/espresso/coffee.png", "--colormap", "rainbow"]));
    assert!(line.contains("rainbow") && line.contains("viridis"), "{line}");
    let line = one_line_error(&camscope(&["explain", "samples/espresso/coffee.png", "--layer", "nope_layer"]));
    assert!(line.contains("nope_layer") && line.contains("camscope layers"), "{line}");
}

fn tree_digest(dir: &Path) -> Vec<(String, u64, Vec<u8>)> {
    let mut v = Vec::new();
    for e in walk(dir) {
        let bytes = std::fs::read(&e).unwrap();
        v.push((e.strip_prefix(dir).unwrap().display().to_string(), bytes.len() as u64, bytes));
    }
    v.sort();
    v
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

#[test]
fn batch_mirrors_the_tree_reports_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    for (sub, src) in
        [("cats", "tabby/chelsea.png"), ("cups", "espresso/coffee.png"), ("cups/deep", "tripod/camera.png")]
    {
        std::fs::create_dir_all(input.join(sub)).unwrap();
        std::fs::copy(sample(src), input.join(sub).join(Path::new(src).file_name().unwrap())).unwrap();
    }
    std::fs::copy(data("bad/truncated.png"), input.join("cats/broken.png")).unwrap();
    std::fs::write(input.join("notes.txt"), "not an image").unwrap();
    let before = tree_digest(&input);
    let out = tmp.path().join("out");
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());
    let r = camscope(&["batch", i, "-o", o]);
    // 3: partial success (an unreadable image), so scripts notice; the rest is done.
    assert_eq!(r.status.code(), Some(3), "{}", String::from_utf8_lossy(&r.stderr));
    for f in [
        "cats/chelsea.gradcam.png",
        "cups/coffee.gradcam.png",
        "cups/deep/camera.gradcam.png",
        "report.json",
        "report.csv",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let report: Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["images"].as_array().unwrap().len(), 3);
    assert_eq!(report["non_images_skipped"], 1);
    assert_eq!(report["unreadable"][0]["file"], "cats/broken.png");
    assert!(report["unreadable"][0]["error"].as_str().unwrap().contains("corrupt or truncated"));
    let coffee = report["images"].as_array().unwrap().iter().find(|e| e["file"] == "cups/coffee.png").unwrap();
    assert_eq!(coffee["class"]["label"], "espresso");
    assert_eq!(coffee["top"].as_array().unwrap().len(), 5);
    let csv = std::fs::read_to_string(out.join("report.csv")).unwrap();
    assert!(csv.lines().next().unwrap().starts_with("file,top1_label,top1_index,top1_probability"));
    assert!(csv.contains("cups/coffee.png,espresso,967,"), "{csv}");
    assert!(csv.contains("cats/broken.png") && csv.contains("unreadable"), "{csv}");
    assert_eq!(tree_digest(&input), before, "the input folder was modified");
    // Resume: nothing recomputed for unchanged images.
    let stamp = std::fs::metadata(out.join("cups/coffee.gradcam.png")).unwrap().modified().unwrap();
    let r = camscope(&["batch", i, "-o", o]);
    assert_eq!(r.status.code(), Some(3));
    let report: Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["reused_from_previous_run"], 3);
    assert_eq!(std::fs::metadata(out.join("cups/coffee.gradcam.png")).unwrap().modified().unwrap(), stamp);
    let r = camscope(&["batch", i, "-o", o, "--overwrite"]);
    assert_eq!(r.status.code(), Some(3));
    let report: Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["reused_from_previous_run"], 0);
    assert_eq!(tree_digest(&input), before);
    // An image that became unreadable leaves the report (its old journal record stays behind,
    // unlisted), and an overlay cut short since the last run is redone.
    std::fs::copy(data("bad/truncated.png"), input.join("cups/deep/camera.png")).unwrap();
    let overlay = out.join("cats/chelsea.gradcam.png");
    let whole = std::fs::read(&overlay).unwrap();
    std::fs::write(&overlay, &whole[..whole.len() - 20]).unwrap();
    let r = camscope(&["batch", i, "-o", o]);
    assert_eq!(r.status.code(), Some(3), "{}", String::from_utf8_lossy(&r.stderr));
    let report: Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let files = |key: &str| -> Vec<String> {
        report[key].as_array().unwrap().iter().map(|e| e["file"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(files("images"), ["cats/chelsea.png", "cups/coffee.png"]);
    assert_eq!(files("unreadable"), ["cats/broken.png", "cups/deep/camera.png"]);
    assert_eq!(report["reused_from_previous_run"], 1, "coffee only: chelsea's overlay was cut");
    assert!(image::open(&overlay).is_ok(), "the cut overlay was written again");
    let csv = std::fs::read_to_string(out.join("report.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "a header, two images and two unreadable ones: {csv}");
    // An overlay with 8 MB appended after its end is longer than any PNG of its size: redone
    // (it used to pass, its CRCs whole up to IEND), and without reading it into memory.
    let coffee = out.join("cups/coffee.gradcam.png");
    let whole = std::fs::read(&coffee).unwrap();
    let mut longer = whole.clone();
    longer.resize(whole.len() + (8 << 20), 0);
    std::fs::write(&coffee, &longer).unwrap();
    let r = camscope(&["batch", i, "-o", o]);
    assert_eq!(r.status.code(), Some(3), "{}", String::from_utf8_lossy(&r.stderr));
    let report: Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["reused_from_previous_run"], 1, "chelsea only: coffee's overlay had bytes appended");
    assert_eq!(std::fs::read(&coffee).unwrap(), whole, "coffee's overlay was written again, as it was");
}

#[test]
fn batch_refuses_overlapping_or_unwritable_output() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::copy(sample("espresso/coffee.png"), input.join("c.png")).unwrap();
    let i = input.to_str().unwrap();
    let inside = input.join("out");
    let line = one_line_error(&camscope(&["batch", i, "-o", inside.to_str().unwrap()]));
    assert!(line.contains("overlaps"), "{line}");
    assert!(!inside.exists(), "nothing may be created inside the input folder");
    let line = one_line_error(&camscope(&["batch", i, "-o", tmp.path().to_str().unwrap()]));
    assert!(line.contains("overlaps"), "{line}");
    // A path below a regular file cannot be a folder (even for root).
    let file = tmp.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let bad = file.join("out");
    let line = one_line_error(&camscope(&["batch", i, "-o", bad.to_str().unwrap()]));
    assert!(line.contains("cannot create the output folder"), "{line}");
    let line = one_line_error(&camscope(&["batch", "samples/nope", "-o", tmp.path().join("o").to_str().unwrap()]));
    assert!(line.contains("samples/nope"), "{line}");
}

#[test]
fn explicit_cuda_fails_loudly_without_a_cuda_build_and_auto_reports_the_cpu() {
    // The PyPI `onnxruntime` wheel these tests run on has no CUDA provider.
    let line = one_line_error(&camscope(&["explain", "samples/espresso/coffee.png", "--device", "cuda"]));
    assert!(line.contains("--device cuda") && line.contains("CUDA") && line.contains("--device cpu"), "{line}");
    let v = json(&["explain", "samples/espresso/coffee.png", "--json", "--device", "auto"]);
    assert_eq!(v[0]["device"], "CPU", "auto falls back to the CPU and says so");
    let line = one_line_error(&camscope(&["explain", "samples/espresso/coffee.png", "--device", "tpu"]));
    assert!(line.contains("tpu") && line.contains("auto, cuda or cpu"), "{line}");
}

/// `--force` replaces a regular file only: as root, `explain -o /dev/null --force` renamed a
/// PNG over the device node, and over a symlink it dropped the user's link.
#[test]
fn force_never_replaces_a_device_or_a_link() {
    let img = sample("tabby/chelsea.png");
    let line = one_line_error(&camscope(&["explain", img.to_str().unwrap(), "-o", "/dev/null", "--force"]));
    assert!(line.contains("/dev/null") && line.contains("not a regular file"), "{line}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::symlink_metadata("/dev/null").unwrap().file_type().is_char_device());
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("kept.png");
        std::fs::write(&target, b"the user's").unwrap();
        let link = tmp.path().join("link.png");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let line =
            one_line_error(&camscope(&["explain", img.to_str().unwrap(), "-o", link.to_str().unwrap(), "--force"]));
        assert!(line.contains("symbolic link"), "{line}");
        assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&target).unwrap(), b"the user's");
    }
}
