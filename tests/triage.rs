//! Issue 6, headless: `camscope triage` on the sample photos (ImageFolder by ImageNet class)
//! and on generated datasets; ground truth from folders and CSV; the scan cache.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

fn triage(args: &[&str], cache: &Path) -> (std::process::Output, Option<Value>) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_camscope"))
        .arg("triage")
        .args(args)
        .current_dir(root())
        .env("CAMSCOPE_CACHE_DIR", cache)
        .output()
        .unwrap();
    let json = args
        .iter()
        .position(|a| *a == "-o")
        .and_then(|i| std::fs::read(Path::new(args[i + 1]).join("triage.json")).ok())
        .and_then(|b| serde_json::from_slice(&b).ok());
    (out, json)
}

#[test]
fn samples_give_the_expected_accuracy_confusions_and_files() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let cache = tmp.path().join("cache");
    let (r, json) = triage(&["samples", "-o", out.to_str().unwrap()], &cache);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let t = json.expect("triage.json");
    let s = &t["summary"];
    assert_eq!((s["images"].as_u64(), s["labeled"].as_u64(), s["unlabeled"].as_u64()), (Some(9), Some(7), Some(2)));
    assert_eq!((s["top1_correct"].as_u64(), s["top5_correct"].as_u64()), (Some(5), Some(7)));
    let confusions: Vec<(String, String, u64)> = s["confusions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c[0].as_str().unwrap().into(), c[1].as_str().unwrap().into(), c[2].as_u64().unwrap()))
        .collect();
    assert_eq!(confusions, vec![("tabby".into(), "Egyptian cat".into(), 1), ("wall clock".into(), "bubble".into(), 1)]);
    let folders = t["unlabeled_folders"].as_array().unwrap();
    assert_eq!(folders.len(), 2, "astronaut and dahlia, once each");
    assert!(folders[0].as_str().unwrap().contains("astronaut") && folders[1].as_str().unwrap().contains("dahlia"));
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert_eq!(stderr.matches("folder name \"astronaut\"").count(), 1, "{stderr}");
    // Per image rows, and maps for the two mistakes only.
    let images = t["images"].as_array().unwrap();
    assert_eq!(images.len(), 9);
    let chelsea = images.iter().find(|i| i["path"] == "tabby/chelsea.png").unwrap();
    assert_eq!((chelsea["true"]["index"].as_u64(), chelsea["predicted"]["index"].as_u64()), (Some(281), Some(285)));
    assert_eq!(chelsea["correct"], false);
    assert!(chelsea["margin"].as_f64().unwrap() < 0.0, "a mistake has a negative margin");
    for f in ["tabby/chelsea", "wall_clock/clock_motion"] {
        for kind in ["predicted", "true", "contrast"] {
            assert!(out.join("mistakes").join(format!("{f}.{kind}.png")).is_file(), "{f} {kind}");
        }
    }
    assert!(!out.join("mistakes/espresso").exists(), "no maps for correct images");
    let csv = std::fs::read_to_string(out.join("triage.csv")).unwrap();
    assert_eq!(csv.lines().count(), 10);
    assert!(csv.contains("tabby/chelsea.png,281,tabby,285,Egyptian cat,"), "{csv}");
    let summary = std::fs::read_to_string(out.join("summary.txt")).unwrap();
    assert!(
        summary.contains("top-1 accuracy: 71.4% (5/7)") && summary.contains("tabby -> Egyptian cat: 1"),
        "{summary}"
    );
    // The scan cache makes the second run reuse every result.
    assert_eq!(t["scan"]["computed"], 9);
    let out2 = tmp.path().join("out2");
    let (r, json) = triage(&["samples", "-o", out2.to_str().unwrap()], &cache);
    assert!(r.status.success());
    let t2 = json.unwrap();
    assert_eq!((t2["scan"]["computed"].as_u64(), t2["scan"]["from_cache"].as_u64()), (Some(0), Some(9)));
    assert_eq!(t2["summary"], t["summary"]);
}

#[test]
fn a_corrupt_or_foreign_cache_is_ignored_and_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let o1 = tmp.path().join("o1");
    assert!(triage(&["samples", "-o", o1.to_str().unwrap()], &cache).0.status.success());
    let files: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("scan-")))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let good = std::fs::read(&files[0]).unwrap();
    // A damaged record (the cache is a log): the records before it are kept, the rest rescanned.
    let mut bytes = good.clone();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&files[0], &bytes).unwrap();
    let o2 = tmp.path().join("o2");
    let (r, json) = triage(&["samples", "-o", o2.to_str().unwrap()], &cache);
    assert!(r.status.success());
    let t = json.unwrap();
    let (computed, cached) = (t["scan"]["computed"].as_u64().unwrap(), t["scan"]["from_cache"].as_u64().unwrap());
    assert!(computed > 0 && cached > 0 && computed + cached == 9, "{}", t["scan"]);
    assert!(t["scan"]["cache_note"].as_str().unwrap().contains("cut off"), "{}", t["scan"]);
    assert_eq!(t["summary"]["top1_correct"], 5);
    // A damaged header: the whole file is discarded, never trusted.
    let mut bytes = good;
    bytes[20] ^= 0xff;
    std::fs::write(&files[0], &bytes).unwrap();
    let o3 = tmp.path().join("o3");
    let (r, json) = triage(&["samples", "-o", o3.to_str().unwrap()], &cache);
    assert!(r.status.success());
    let t = json.unwrap();
    assert_eq!(t["scan"]["computed"], 9, "a corrupt cache is never trusted");
    assert!(t["scan"]["cache_note"].as_str().unwrap().contains("discarded"), "{}", t["scan"]);
    assert_eq!(t["summary"]["top1_correct"], 5);
}

fn write(p: &Path, text: &str) {
    std::fs::write(p, text).unwrap();
}

#[test]
fn csv_ground_truth_and_its_bad_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let csv = tmp.path().join("truth.csv");
    // Relabel: chelsea is called an Egyptian cat here, the clock a wall clock (by index).
    write(
        &csv,
        "label,path\nEgyptian cat,tabby/chelsea.png\n892,wall_clock/clock_motion.png\n\"espresso\",espresso/coffee.png\n",
    );
    let out = tmp.path().join("o");
    let (r, json) = triage(&["samples", "--labels", csv.to_str().unwrap(), "-o", out.to_str().unwrap()], &cache);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let s = &json.unwrap()["summary"];
    assert_eq!((s["labeled"].as_u64(), s["top1_correct"].as_u64()), (Some(3), Some(2)));
    let cases = [
        ("path,class\na.png,tabby\n", "missing column"),
        ("path,label\n../outside.png,tabby\n", "outside the dataset root"),
        ("path,label\ntabby/chelsea.png,tabby\ntabby/chelsea.png,espresso\n", "keep one row per image"),
        ("path,label\ntabby/chelsea.png,tabbby\n", "tabby"),
    ];
    for (text, expect) in cases {
        write(&csv, text);
        let out = tmp.path().join("bad");
        let (r, _) = triage(&["samples", "--labels", csv.to_str().unwrap(), "-o", out.to_str().unwrap()], &cache);
        let line = one_line_error(&r);
        assert!(line.contains("truth.csv") && line.contains(expect), "{text:?}: {line}");
    }
}

#[test]
fn triage_never_writes_inside_the_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let line = one_line_error(&triage(&["samples", "-o", "samples/triage-out"], tmp.path()).0);
    assert!(line.contains("overlaps"), "{line}");
    assert!(!root().join("samples/triage-out").exists());
}

/// Several decoding threads hand batches back in the images' order: the same results, in the
/// same order, as one decoder, unreadable files included (a text file posing as a PNG).
#[test]
fn several_decoders_give_the_same_results_in_the_same_order() {
    use camscope::dataset::truth::{FolderTruth, GroundTruth};
    use camscope::engine::LoadedModel;
    use camscope::model::Labels;
    use camscope::triage::{ScanModel, ScanOptions, ScanUpdate, scan};

    let dir = tempfile::tempdir().unwrap();
    let mut images = Vec::new();
    for (i, rel) in
        ["espresso/coffee.png", "tabby/chelsea.png", "missile/rocket.jpg", "tripod/camera.png"].iter().enumerate()
    {
        let dst = dir.path().join(rel);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(sample(rel), &dst).unwrap();
        images.push(dst);
        if i == 1 {
            let bad = dir.path().join("tabby/broken.png");
            std::fs::write(&bad, "not a png").unwrap();
            images.push(bad);
        }
    }
    let model = LoadedModel::open(&bundled_model(), None, &onnx_build::cpu()).unwrap();
    let scan_model = ScanModel::from(&model);
    let labels = Labels::read(&root().join("models/imagenet_labels.txt")).unwrap();
    let run = |decoders: usize| {
        let mut truth = GroundTruth::Folders(FolderTruth::new(dir.path(), labels.clone()));
        let mut opts = ScanOptions::new(onnx_build::cpu());
        opts.batch = 2;
        opts.cache_dir = None;
        opts.decoders = Some(decoders);
        let mut events = Vec::new();
        let report = scan(&scan_model, &images, dir.path(), &mut truth, &opts, |u| {
            events.push(match u {
                ScanUpdate::Result { index, result, .. } => (index, result.predicted().map(|p| p.to_string())),
                ScanUpdate::Unreadable { index, .. } => (index, None),
            });
            true
        })
        .unwrap();
        assert_eq!(report.decoders, decoders);
        assert_eq!((report.computed, report.unreadable), (4, 1));
        events
    };
    let one = run(1);
    assert_eq!(one.iter().map(|e| e.0).collect::<Vec<_>>(), [0, 1, 2, 3, 4], "{one:?}");
    assert_eq!(run(3), one);
}
