//! Issue 12 item 5: `camscope OUT` opens the inspector on what `camscope triage -o OUT` recorded,
//! with no rescan; maps come from the images under the recorded root or `--root`. Driven in a
//! real terminal (tmux) like tests/tui.rs, plus the bad outputs, each one line in the shell.
//!
//! "No rescan" is shown two ways: the dataset is moved away before OUT is opened (a scan
//! would find nothing, yet the marks and the summary are there), and `--trace` records the
//! first frame with every result present and no image scanned, from start to exit.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::tmux::Tmux;
use common::*;

/// camscope with `args` in a 200×50 terminal, its scan cache in `cache`.
fn start(args: &[&str], cache: &Path) -> Tmux {
    Tmux::start_sized(&root(), args, &[("CAMSCOPE_CACHE_DIR", &cache.to_string_lossy())], (200, 50))
}

/// The row of the file list that names `name` (without the pane's borders).
fn file_row(screen: &str, name: &str) -> Option<String> {
    screen
        .lines()
        .find(|l| l.starts_with('┃') && l.split('┃').nth(1).is_some_and(|row| row.contains(name)))
        .map(|l| l.split('┃').nth(1).unwrap_or_default().trim().to_owned())
}

/// The screen shows a finished map.
fn map_shown(s: &str) -> bool {
    s.contains("Top 5 classes") && s.contains('▶') && s.contains("head ") && !s.contains("computing")
}

/// `camscope triage DATA -o OUT` (extra args after), with its own cache; panics on failure.
fn triage(data: &Path, out: &Path, cache: &Path, extra: &[&str]) {
    let r = Command::new(env!("CARGO_BIN_EXE_camscope"))
        .arg("triage")
        .arg(data)
        .arg("-o")
        .arg(out)
        .args(extra)
        .env("CAMSCOPE_CACHE_DIR", cache)
        .output()
        .unwrap();
    assert!(r.status.success(), "triage: {}", String::from_utf8_lossy(&r.stderr));
}

/// A copy of the sample photos (ImageFolder by ImageNet class: 7 labeled, 2 mistakes).
fn copy_samples(to: &Path) {
    for e in walk(&root().join("samples")) {
        let rel = e.strip_prefix(root().join("samples")).unwrap();
        if matches!(e.extension().and_then(|x| x.to_str()), Some("png" | "jpg")) {
            std::fs::create_dir_all(to.join(rel).parent().unwrap()).unwrap();
            std::fs::copy(&e, to.join(rel)).unwrap();
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

/// Run `camscope ARGS` without a terminal: every check on a triage output runs before the
/// terminal is needed, so an output that would open ends with the "interactive terminal"
/// line, and a refused one with its own.
fn open_headless(args: &[&str], cache: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_camscope"))
        .args(args)
        .current_dir(root())
        .env("CAMSCOPE_CACHE_DIR", cache)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    one_line_error(&out)
}

#[test]
fn recorded_results_open_at_once_without_a_scan_and_maps_follow_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, moved, out, cache) =
        (tmp.path().join("data"), tmp.path().join("moved"), tmp.path().join("out"), tmp.path().join("cache"));
    copy_samples(&data);
    triage(&data, &out, &cache, &[]);
    // The dataset goes away: a scan could not see a single image now.
    std::fs::rename(&data, &moved).unwrap();
    let trace = tmp.path().join("trace.jsonl");
    // A fresh, empty cache: nothing could come from it either.
    let empty_cache = tmp.path().join("empty-cache");
    let t =
        start(&[out.to_str().unwrap(), "--graphics", "halfblocks", "--trace", trace.to_str().unwrap()], &empty_cache);
    let s = t.wait("the recorded results and the missing images", |s| {
        s.contains("9 images recorded") && s.contains("9 missing")
    });
    assert!(s.contains("top-1 71.4%"), "the recorded accuracy: {s}");
    assert!(s.contains("all 9 of 9 images missing under") && s.contains("--root DIR"), "says how to fix: {s}");
    assert!(!s.contains("scan "), "no scan runs: {s}");
    let chelsea = file_row(&s, "chelsea.png").unwrap_or_else(|| panic!("no row for chelsea:\n{s}"));
    assert!(chelsea.starts_with('✗') && chelsea.contains("missing"), "marked wrong and missing: {chelsea}");
    assert!(file_row(&s, "coffee.png").is_some_and(|r| r.starts_with('✓')), "{s}");
    // The summary, from the recorded predictions.
    t.keys(&["t"]);
    let s = t.wait("the summary", |s| s.contains("Triage summary") && s.contains("top-1 accuracy"));
    assert!(s.contains("top-1 accuracy 71.4% (5/7)") && s.contains("tabby → Egyptian cat"), "{s}");
    assert!(s.contains("9 images recorded · 7 labeled, 2 unlabeled, 0 unreadable · 9 missing under the root"), "{s}");
    t.keys(&["Escape"]);
    // Filters and sorts work on recorded results: the mistakes only.
    t.keys(&["f"]);
    let s = t.wait("the mistakes filter", |s| s.contains("Files 1/2 · mistakes"));
    assert!(file_row(&s, "coffee.png").is_none(), "{s}");
    t.quit();
    drop(t);
    let trace = std::fs::read_to_string(&trace).unwrap();
    let first = trace.lines().find(|l| l.contains("\"first_frame\"")).expect("first_frame in the trace");
    assert!(
        first.contains("\"triage\":\"recorded\"") && first.contains("\"results\":9") && first.contains("\"scanned\":0"),
        "every result is in the first frame, none scanned: {first}"
    );
    let exit = trace.lines().find(|l| l.contains("\"exit\"")).expect("exit in the trace");
    assert!(exit.contains("\"scanned\":0"), "no image was scanned while it ran: {exit}");

    // --root where the dataset is now: the maps of a mistake, in the compare view.
    let t = start(&[out.to_str().unwrap(), "--graphics", "halfblocks", "--root", moved.to_str().unwrap()], &cache);
    let s = t.wait("the recorded results", |s| s.contains("9 images recorded") && map_shown(s));
    assert!(!s.contains("missing"), "every image is found under --root: {s}");
    t.keys(&["n"]);
    t.wait("the first mistake", |s| map_shown(s) && s.contains("tabby/chelsea.png ·"));
    t.keys(&["x"]);
    let s = t.wait("the compare view", |s| map_shown(s) && s.contains("Egyptian cat over tabby"));
    assert!(s.contains("compare: predicted | true | predicted − true"), "{s}");
    t.quit();
}

#[test]
fn a_shard_opens_with_its_images_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, cache) = (tmp.path().join("shard1"), tmp.path().join("cache"));
    triage(&root().join("samples"), &out, &cache, &["--shard", "1/2"]);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("triage.json")).unwrap()).unwrap();
    let n = json["images"].as_array().unwrap().len() + json["unreadable"].as_array().unwrap().len();
    assert!(n > 0 && n < 9, "shard 1/2 holds part of the samples: {n}");
    let t = start(&[out.to_str().unwrap(), "--graphics", "halfblocks"], &cache);
    let s = t.wait("the shard's results", |s| s.contains(&format!("{n} images recorded")));
    assert!(s.contains("shard 1/2"), "the status bar says which shard: {s}");
    assert!(s.contains(&format!("Files 1/{n}")), "only the shard's images: {s}");
    t.quit();
}

#[test]
fn bad_outputs_and_options_are_one_line_each() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let out = tmp.path().join("out");
    triage(&root().join("samples"), &out, &cache, &[]);
    let o = out.to_str().unwrap();
    let json = std::fs::read_to_string(out.join("triage.json")).unwrap();

    // A good output passes every check (and only lacks a terminal here).
    assert!(open_headless(&[o], &cache).contains("interactive terminal"));
    // Another method for the maps is allowed (the predictions do not depend on it).
    assert!(open_headless(&[o, "--method", "eigencam"], &cache).contains("interactive terminal"));

    // A copy of the output whose triage.json is `edit`ed; the error line for it.
    let variant = |name: &str, text: &str| {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("triage.json"), text).unwrap();
        dir
    };
    let edit = |name: &str, f: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        f(&mut v);
        variant(name, &serde_json::to_string_pretty(&v).unwrap())
    };

    let d = variant("truncated", &json[..json.len() / 2]);
    let line = open_headless(&[d.to_str().unwrap()], &cache);
    assert!(line.contains("triage.json") && line.contains("truncated") && line.contains("copy it again"), "{line}");

    let d = variant("corrupt", "{\"format_version\": 2, oops}");
    let line = open_headless(&[d.to_str().unwrap()], &cache);
    assert!(line.contains("triage.json") && line.contains("not valid JSON"), "{line}");

    // As camscope wrote it before format 2: no version, no model fingerprint.
    let d = edit("older", &|v| {
        let o = v.as_object_mut().unwrap();
        o.remove("format_version");
        o.remove("model_sha256");
    });
    let line = open_headless(&[d.to_str().unwrap()], &cache);
    assert!(line.contains("triage.json") && line.contains("older camscope") && line.contains("rerun"), "{line}");

    // Format 2, before NaN-scored images had a list of their own: still read.
    let d = edit("format2", &|v| {
        v["format_version"] = 2.into();
        v.as_object_mut().unwrap().remove("nan_scores");
        v["summary"].as_object_mut().unwrap().remove("nan_scores");
    });
    assert!(open_headless(&[d.to_str().unwrap()], &cache).contains("interactive terminal"));

    let d = edit("newer", &|v| v["format_version"] = 99.into());
    let line = open_headless(&[d.to_str().unwrap()], &cache);
    assert!(line.contains("newer camscope") && line.contains("upgrade"), "{line}");

    // Made on a cluster: the model's path is not here, but the bundled model is the same file.
    let d = edit("cluster", &|v| {
        v["model"] = "/cluster/models/efficientnet_lite0.onnx".into();
        v["config"]["model"] = "/cluster/models/efficientnet_lite0.onnx".into();
        v["dataset"] = "/cluster/data/val".into();
    });
    assert!(open_headless(&[d.to_str().unwrap()], &cache).contains("interactive terminal"));
    // ... and with a model that is nowhere here.
    let d = edit("elsewhere", &|v| {
        v["model"] = "/cluster/models/mine.onnx".into();
        v["config"]["model"] = "/cluster/models/mine.onnx".into();
        v["model_sha256"] = "ab".repeat(32).into();
    });
    let line = open_headless(&[d.to_str().unwrap()], &cache);
    assert!(
        line.contains("/cluster/models/mine.onnx") && line.contains("not on this machine") && line.contains("--model"),
        "{line}"
    );

    // --model with another file than the triage's.
    let other = tmp.path().join("other.onnx");
    let mut bytes = std::fs::read(bundled_model()).unwrap();
    bytes.extend_from_slice(b"\0");
    std::fs::write(&other, bytes).unwrap();
    let line = open_headless(&[o, "--model", other.to_str().unwrap()], &cache);
    assert!(line.contains("other.onnx") && line.contains("not the model") && line.contains("SHA-256"), "{line}");

    // A card with other preprocessing: the predictions would not be this model's.
    let card = std::fs::read_to_string(root().join("models/efficientnet_lite0.toml")).unwrap();
    let labels = root().join("models/imagenet_labels.txt");
    let card = card
        .replace("crop_fraction = 1.0", "crop_fraction = 0.875")
        .replace("labels = \"imagenet_labels.txt\"", &format!("labels = {:?}", labels.to_str().unwrap()));
    let card_file = tmp.path().join("card.toml");
    std::fs::write(&card_file, card).unwrap();
    let line = open_headless(&[o, "--card", card_file.to_str().unwrap()], &cache);
    assert!(line.contains("input.crop_fraction") && line.contains("--card"), "{line}");

    // --root that does not exist.
    let line = open_headless(&[o, "--root", "/no/such/dataset"], &cache);
    assert!(line.contains("--root /no/such/dataset") && line.contains("no such folder"), "{line}");
    // --root or --labels where they do not apply.
    let line = open_headless(&["samples", "--root", "/tmp"], &cache);
    assert!(line.contains("--root") && line.contains("no triage.json"), "{line}");
    let line = open_headless(&[o, "--labels", "x.csv"], &cache);
    assert!(line.contains("--labels") && line.contains("recorded"), "{line}");

    // A batch output: what to do instead.
    let b = tmp.path().join("batch");
    let r = camscope(&["batch", "samples/tabby", "-o", b.to_str().unwrap()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let line = open_headless(&[b.to_str().unwrap()], &cache);
    assert!(
        line.contains("report.json") && line.contains("camscope batch") && line.contains("camscope triage"),
        "{line}"
    );
}

/// Time from starting `camscope ARGS` in tmux until the screen satisfies `ok`.
fn time_to(args: &[&str], cache: &Path, what: &str, ok: impl Fn(&str) -> bool) -> Duration {
    let t0 = Instant::now();
    let t = start(args, cache);
    t.wait(what, ok);
    let took = t0.elapsed();
    t.quit();
    took
}

/// Time to a usable screen (every mark and the summary's figures) on a triage output of 2,000
/// images, against opening the dataset itself, which rescans it (with an empty cache and with
/// the cache the triage filled). `cargo test --test recorded -- --ignored --nocapture first_frame`.
#[test]
#[ignore = "a measurement (a minute or more on 2 cores); run by hand"]
fn first_frame_2000_recorded_vs_rescan() {
    let n = 2000;
    let tmp = tempfile::tempdir().unwrap();
    let (data, out, cache) = (tmp.path().join("data"), tmp.path().join("out"), tmp.path().join("cache"));
    make_class_images(&data, n, 96);
    let t0 = Instant::now();
    triage(&data, &out, &cache, &[]);
    println!("triage of {n} images (scan + maps of the mistakes): {:.1} s", t0.elapsed().as_secs_f64());
    let (o, d) = (out.to_str().unwrap(), data.to_str().unwrap());
    let all = format!("{n} images recorded");
    let done = format!("scan {n}/{n} done");
    for round in 0..2 {
        let recorded = time_to(&[o, "--graphics", "halfblocks"], &cache, "the recorded results", |s| {
            s.contains(&all) && s.contains("top-1 ")
        });
        let empty = tmp.path().join(format!("empty-cache-{round}"));
        let cold = time_to(&[d, "--graphics", "halfblocks"], &empty, "the rescan (empty cache)", |s| s.contains(&done));
        let warm =
            time_to(&[d, "--graphics", "halfblocks"], &cache, "the rescan (the triage's cache)", |s| s.contains(&done));
        println!(
            "round {round}: camscope OUT {:.2} s; camscope DATA until the scan is done: {:.2} s with an empty cache, {:.2} s from the triage's cache",
            recorded.as_secs_f64(),
            cold.as_secs_f64(),
            warm.as_secs_f64()
        );
    }
}
