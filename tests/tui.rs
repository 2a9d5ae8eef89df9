//! Issue 5 end to end: the real binary in a real terminal (tmux), driven by keys and read back
//! through `capture-pane`, plus the errors that must appear before the terminal is taken over.
//!
//! Each test runs its own tmux server on a socket in a temporary folder, so tests can run in
//! parallel and never touch the user's tmux. Waits poll the screen with generous deadlines (a
//! loaded 2-core CI machine runs the debug binary); nothing asserts on a fixed sleep.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::tmux::Tmux;
use common::*;

/// The highlighted row of the classes pane (its label and probability).
fn highlighted(screen: &str) -> Option<String> {
    let line = screen.lines().find(|l| l.contains('▶'))?;
    let after = &line[line.find('▶')? + '▶'.len_utf8()..];
    Some(after.split(['│', '┃']).next()?.trim().to_owned())
}

/// The image pane's cells with their colours: on each line, from the first half-block to the last.
fn image_cells(escaped: &str) -> String {
    escaped
        .lines()
        .filter_map(|l| {
            let a = l.find(['▀', '▄'])?;
            let b = l.rfind(['▀', '▄'])?;
            // Include the colour escapes just before the first block.
            let start = l[..a].rfind('\u{1b}').unwrap_or(a);
            Some(&l[start..b])
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The screen shows a finished map: the top-k list, its timings, nothing computing.
fn map_shown(s: &str) -> bool {
    s.contains("Top 5 classes") && s.contains('▶') && s.contains("head ") && !s.contains("computing")
}

#[test]
fn inspector_switches_class_and_image_then_restores_the_terminal() {
    let t = Tmux::start(&root(), &["samples", "--graphics", "halfblocks"], &[]);
    let first = t.wait("the first image's top-k and map", |s| map_shown(s) && s.contains("astronaut"));
    assert!(first.contains("Files 1/9"), "{first}");
    assert!(first.contains("half-blocks") && first.contains("gradcam"), "{first}");
    let class0 = highlighted(&first).expect("a highlighted class");
    let cells0 = image_cells(&t.screen_escaped());
    assert!(cells0.contains("38;2;"), "the image is drawn in true colour: {cells0}");

    // Focus the classes and take the second class: the highlight and the heatmap follow.
    t.keys(&["Tab", "j"]);
    let s = t.wait("the second class's map", |s| {
        map_shown(s) && highlighted(s).is_some_and(|h| h != class0) && image_cells(&t.screen_escaped()) != cells0
    });
    let class1 = highlighted(&s).unwrap();
    assert_ne!(class1, class0);
    let cells1 = image_cells(&t.screen_escaped());

    // Back to the files, next image: a new title, its own classes and map.
    t.keys(&["Tab", "j"]);
    let s = t.wait("the second image", |s| {
        map_shown(s) && s.contains("dahlia/flower.jpg ·") && image_cells(&t.screen_escaped()) != cells1
    });
    assert!(s.contains("Files 2/9"), "{s}");

    // The help overlay, closed by any key.
    t.keys(&["?"]);
    t.wait("the help overlay", |s| s.contains("camscope keys"));
    t.keys(&["Escape"]);
    t.wait("the help to close", |s| !s.contains("camscope keys"));

    t.keys(&["q"]);
    let s = t.wait("camscope to exit", |s| s.contains("RAW="));
    assert!(s.contains("EXITED=0"), "{s}");
    assert!(s.contains("RAW=off"), "raw mode left on: {s}");
    assert!(!s.contains("Top 5 classes"), "the alternate screen was left: {s}");
    assert_eq!(t.modes(), "0 1", "alternate screen off, cursor visible");
}

#[test]
fn a_panic_inside_the_inspector_restores_the_terminal() {
    let t = Tmux::start(&root(), &["samples", "--graphics", "halfblocks"], &[("CAMSCOPE_TEST_PANIC", "1")]);
    let s = t.wait("camscope to panic and exit", |s| s.contains("RAW="));
    assert!(s.contains("EXITED=101"), "a panic exits with 101: {s}");
    assert!(s.contains("deliberate panic"), "the panic message is readable: {s}");
    assert!(s.contains("RAW=off"), "raw mode left on: {s}");
    assert_eq!(t.modes(), "0 1", "alternate screen off, cursor visible");
}

#[test]
fn quitting_during_a_score_cam_stops_it_and_exits_cleanly() {
    // Score-CAM runs the model hundreds of times (seconds on 2 cores): quitting stops it after
    // the run in progress and waits for the engine thread to let go of ONNX Runtime, so the
    // process ends with 0, not with a crash in ONNX Runtime's exit-time destructors.
    let t = Tmux::start(&root(), &["samples", "--graphics", "halfblocks", "--method", "scorecam"], &[]);
    t.wait("Score-CAM to start computing", |s| s.contains("computing…"));
    t.keys(&["q"]);
    let s = t.wait("camscope to exit", |s| s.contains("RAW="));
    assert!(s.contains("EXITED=0"), "{s}");
    assert!(s.contains("RAW=off"), "raw mode left on: {s}");
    assert_eq!(t.modes(), "0 1", "alternate screen off, cursor visible");
}

#[test]
fn an_empty_folder_opens_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not an image").unwrap();
    let t = Tmux::start(&root(), &[dir.path().to_str().unwrap(), "--graphics", "halfblocks"], &[]);
    let s = t.wait("the empty-folder message", |s| s.contains("no images under"));
    assert!(s.contains("1 non-image files skipped"), "{s}");
    t.keys(&["q"]);
    let s = t.wait("camscope to exit", |s| s.contains("RAW="));
    assert!(s.contains("EXITED=0") && s.contains("RAW=off"), "{s}");
}

#[test]
fn a_model_that_fails_to_load_is_one_line_before_the_terminal_is_taken() {
    let bad = data("bad/garbage.onnx");
    let out = camscope(&["--model", bad.to_str().unwrap(), "samples"]);
    let line = one_line_error(&out);
    assert!(line.contains("garbage.onnx"), "{line}");
    assert_eq!(out.status.code(), Some(1));
    let line = one_line_error(&camscope(&["no/such/folder"]));
    assert!(line.contains("no/such/folder: no such file or directory"), "{line}");
    // Not a terminal (as here): told to use `explain`, after the checks above.
    let line = one_line_error(&camscope(&["samples"]));
    assert!(line.contains("needs an interactive terminal") && line.contains("camscope explain"), "{line}");
    let line = one_line_error(&camscope(&["samples", "--alpha", "2"]));
    assert!(line.contains("--alpha 2 is outside 0..1"), "{line}");
}

#[test]
fn subcommands_still_work_beside_the_path_argument() {
    let out = camscope(&["layers", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = camscope(&["explain", "--no-show", "samples/espresso/coffee.png"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("espresso"));
    // Inspector options and a subcommand do not mix.
    let out = camscope(&["--top", "3", "layers"]);
    assert!(!out.status.success());
}

/// Responsiveness and memory while browsing 1,000 images with the bundled model: generates the
/// images (crops of the samples, 320×240 JPEG) in a temporary folder, drives the inspector with
/// `--trace`, and prints latency percentiles and peak memory. Slow (about 3 minutes) and only
/// meaningful in release mode:
/// `cargo test --release --test tui -- --ignored --nocapture browse_1000`.
#[test]
#[ignore = "benchmark: run in release mode with --ignored --nocapture"]
fn browse_1000_images_benchmark() {
    let dir = tempfile::tempdir().unwrap();
    make_images(dir.path(), 1000);
    let trace = dir.path().join("trace.jsonl");
    let t = Tmux::start(
        &root(),
        &[dir.path().to_str().unwrap(), "--graphics", "halfblocks", "--trace", trace.to_str().unwrap()],
        &[],
    );
    t.wait("the first map", |s| map_shown(s) && s.contains("1000 images"));
    let pause = |ms| std::thread::sleep(Duration::from_millis(ms));
    // Class switches on the first image.
    t.keys(&["Tab"]);
    for _ in 0..20 {
        t.keys(&["j"]);
        pause(100);
        t.keys(&["k"]);
        pause(100);
    }
    t.keys(&["Tab"]);
    // Cold images: jumps beyond the prefetched neighbours.
    for _ in 0..15 {
        t.keys(&["PageDown"]);
        pause(400);
    }
    t.keys(&["g"]);
    pause(400);
    // Browse every image, one key every 120 ms (the prefetch keeps ahead).
    for _ in 0..999 {
        t.keys(&["j"]);
        pause(120);
    }
    t.wait("the last image", |s| s.contains("Files 1000/1000") && map_shown(s));
    t.keys(&["q"]);
    t.wait("camscope to exit", |s| s.contains("RAW="));
    report(&std::fs::read_to_string(&trace).unwrap());
}

/// `--trace` in CI (the benchmark above is ignored): two images shown, one key, the exit; one JSON object per
/// line, in time order, with the fields the benchmark's report reads.
#[test]
fn trace_records_keys_shown_frames_and_the_exit() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.jsonl");
    let t = Tmux::start(&root(), &["samples", "--graphics", "halfblocks", "--trace", trace.to_str().unwrap()], &[]);
    t.wait("the first map", |s| map_shown(s) && s.contains("astronaut"));
    t.keys(&["j"]);
    t.wait("the second image's map", |s| map_shown(s) && s.contains("Files 2/9"));
    t.keys(&["q"]);
    let s = t.wait("camscope to exit", |s| s.contains("RAW="));
    assert!(s.contains("EXITED=0"), "{s}");
    let text = std::fs::read_to_string(&trace).unwrap();
    let events: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let kind = |e: &serde_json::Value| e["ev"].as_str().unwrap_or_default().to_owned();
    let times: Vec<f64> = events.iter().map(|e| e["t_ms"].as_f64().expect("t_ms")).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "events out of time order: {text}");
    let keys: Vec<&serde_json::Value> = events.iter().filter(|e| kind(e) == "key").collect();
    assert_eq!(
        keys.iter().map(|e| e["key"].as_str().unwrap()).collect::<Vec<_>>(),
        ["Char('j')", "Char('q')"],
        "{text}"
    );
    let shown: Vec<&serde_json::Value> = events.iter().filter(|e| kind(e) == "shown").collect();
    let images = shown.iter().filter(|e| e["kind"] == "image").count();
    assert!(images >= 2, "the first image and the one after `j`: {text}");
    for e in &shown {
        for field in ["latency_ms", "frame_ms", "decode_ms", "body_ms", "head_ms", "map_ms"] {
            assert!(e[field].as_f64().is_some_and(|v| v >= 0.0 && v.is_finite()), "{field} in {e}");
        }
        assert!(e["serial"].as_u64().is_some() && e["vm_rss_kb"].as_u64().is_some_and(|v| v > 0), "{e}");
    }
    // The image shown after `j` came after the key, and its latency is measured from it.
    let j_at = keys[0]["t_ms"].as_f64().unwrap();
    let after =
        shown.iter().find(|e| e["kind"] == "image" && e["t_ms"].as_f64().unwrap() >= j_at).expect("shown after j");
    let latency = after["latency_ms"].as_f64().unwrap();
    assert!(latency <= after["t_ms"].as_f64().unwrap() - j_at + 1.0, "latency {latency} from the key: {after}");
    let last = events.last().unwrap();
    assert_eq!(kind(last), "exit", "{text}");
    assert!(last["vm_hwm_kb"].as_u64().is_some_and(|hwm| hwm >= last["vm_rss_kb"].as_u64().unwrap()), "{last}");
}

fn make_images(dir: &Path, n: usize) {
    let sources: Vec<image::RgbImage> = [
        "astronaut/astronaut.png",
        "dahlia/flower.jpg",
        "espresso/coffee.png",
        "tabby/chelsea.png",
        "tripod/camera.png",
    ]
    .iter()
    .map(|p| image::open(sample(p)).unwrap().to_rgb8())
    .collect();
    for i in 0..n {
        let src = &sources[i % sources.len()];
        let (w, h) = src.dimensions();
        let (cw, ch) = (w * (5 + (i % 4) as u32) / 10, h * (5 + (i % 3) as u32) / 10);
        let (x, y) = ((i as u32 * 37) % (w - cw + 1), (i as u32 * 53) % (h - ch + 1));
        let crop = image::imageops::crop_imm(src, x, y, cw, ch).to_image();
        let small = image::imageops::resize(&crop, 320, 240, image::imageops::FilterType::Triangle);
        let sub = dir.join(format!("class{}", i % 10));
        std::fs::create_dir_all(&sub).unwrap();
        small.save(sub.join(format!("img{i:04}.jpg"))).unwrap();
    }
}

/// Print the trace's latencies (p50 / p95 / max) by kind, and memory.
fn report(trace: &str) {
    let events: Vec<serde_json::Value> = trace.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let lat = |kind: &str, cached: Option<bool>| -> Vec<f64> {
        let mut v: Vec<f64> = events
            .iter()
            .filter(|e| e["ev"] == "shown" && e["kind"] == kind && cached.is_none_or(|c| e["cached"] == c))
            .map(|e| e["latency_ms"].as_f64().unwrap())
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let pct = |v: &[f64], p: f64| v.get(((v.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN);
    for (name, v) in [
        ("class switch (new map, same image)", lat("map", None)),
        ("move to a prefetched image", lat("image", Some(true))),
        ("move to a cold image", lat("image", Some(false))),
    ] {
        println!(
            "{name:<38} n={:<4} p50 {:6.1} ms  p95 {:6.1} ms  max {:6.1} ms",
            v.len(),
            pct(&v, 0.5),
            pct(&v, 0.95),
            v.last().copied().unwrap_or(f64::NAN)
        );
    }
    let cold: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["ev"] == "shown" && e["kind"] == "image" && e["cached"] == false).collect();
    let mean = |k: &str| cold.iter().map(|e| e[k].as_f64().unwrap_or(0.0)).sum::<f64>() / cold.len().max(1) as f64;
    println!(
        "cold images, mean: decode {:.1} ms, body {:.1} ms, head {:.1} ms, map {:.1} ms",
        mean("decode_ms"),
        mean("body_ms"),
        mean("head_ms"),
        mean("map_ms")
    );
    let shown: Vec<&serde_json::Value> = events.iter().filter(|e| e["ev"] == "shown").collect();
    let avg = |k: &str| shown.iter().map(|e| e[k].as_f64().unwrap_or(0.0)).sum::<f64>() / shown.len().max(1) as f64;
    let max = |k: &str| shown.iter().map(|e| e[k].as_f64().unwrap_or(0.0)).fold(0.0, f64::max);
    println!(
        "per shown frame: draw mean {:.1} ms (max {:.1}), compose mean {:.1} ms, head mean {:.1} ms",
        avg("frame_ms"),
        max("frame_ms"),
        avg("compose_ms"),
        avg("head_ms")
    );
    let first_rss = shown.first().and_then(|e| e["vm_rss_kb"].as_u64()).unwrap_or(0);
    println!("memory: VmRSS at the first map {:.0} MB", first_rss as f64 / 1024.0);
    let rss = events.iter().filter_map(|e| e["vm_rss_kb"].as_u64()).max().unwrap_or(0);
    let exit = events.iter().find(|e| e["ev"] == "exit").expect("an exit event");
    println!(
        "memory: VmRSS max while browsing {:.0} MB, VmHWM at exit {:.0} MB",
        rss as f64 / 1024.0,
        exit["vm_hwm_kb"].as_f64().unwrap() / 1024.0
    );
}

#[test]
fn auto_graphics_falls_back_to_half_blocks_without_eating_a_key() {
    // A detached tmux answers no graphics query (it forwards them to an outer terminal that is
    // not there): camscope must fall back to half-blocks and still get the very first key.
    let t = Tmux::start(&root(), &["samples/tabby"], &[]);
    let s = t.wait("the first map", map_shown);
    assert!(s.contains("half-blocks"), "{s}");
    t.keys(&["v"]);
    t.wait("the heatmap view after one key", |s| s.contains("chelsea.png · heatmap"));
    t.keys(&["q"]);
    let s = t.wait("camscope to exit", |s| s.contains("RAW="));
    assert!(s.contains("EXITED=0") && s.contains("RAW=off"), "{s}");
}

#[test]
fn an_unreadable_image_shows_its_error_and_resizes_redraw() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(data("bad/truncated.png"), dir.path().join("a_broken.png")).unwrap();
    std::fs::copy(sample("tabby/chelsea.png"), dir.path().join("b_cat.png")).unwrap();
    let t = Tmux::start(&root(), &[dir.path().to_str().unwrap(), "--graphics", "halfblocks"], &[]);
    let s = t.wait("the broken image's error", |s| s.contains("cannot show this image"));
    assert!(s.contains("a_broken.png"), "{s}");
    t.keys(&["j"]);
    t.wait("the next image's map", |s| map_shown(s) && s.contains("b_cat.png ·"));
    // A storm of resizes, through a too-small size, ends in a clean frame of the last size.
    for (w, h) in [("100", "30"), ("50", "10"), ("120", "40"), ("70", "20"), ("50", "10")] {
        t.tmux(&["resize-window", "-t", "t", "-x", w, "-y", h]);
    }
    t.wait("the too-small message", |s| s.contains("terminal too small"));
    t.tmux(&["resize-window", "-t", "t", "-x", "130", "-y", "40"]);
    let s = t.wait("the layout at 130x40", |s| map_shown(s) && !s.contains("terminal too small"));
    assert!(s.lines().next().is_some_and(|l| l.chars().count() == 130), "{s}");
    t.keys(&["q"]);
    let s = t.wait("camscope to exit", |s| s.contains("RAW="));
    assert!(s.contains("EXITED=0") && s.contains("RAW=off"), "{s}");
}

/// The file list's row of `name` (the left pane), if shown.
fn file_row(screen: &str, name: &str) -> Option<String> {
    screen
        .lines()
        .find(|l| l.starts_with('┃') && l.split('┃').nth(1).is_some_and(|row| row.contains(name)))
        .map(|l| l.split('┃').nth(1).unwrap_or_default().trim().to_owned())
}

/// `(n, total)` of the status bar's `scan n/total`, and whether it says `done`.
fn scan_progress(screen: &str) -> Option<(usize, usize, bool)> {
    let at = screen.rfind("scan ")?;
    let rest = &screen[at + 5..];
    let (n, rest) = rest.split_once('/')?;
    let total: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((n.parse().ok()?, total.parse().ok()?, rest[total.len()..].starts_with(" done")))
}

#[test]
fn triage_on_the_samples_marks_summarises_jumps_to_mistakes_and_compares() {
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().to_str().unwrap();
    let t = Tmux::start_sized(
        &root(),
        &["samples", "--graphics", "halfblocks"],
        &[("CAMSCOPE_CACHE_DIR", cache_dir)],
        (200, 50),
    );
    let s = t.wait("the scan to finish", |s| scan_progress(s).is_some_and(|p| p == (9, 9, true)));
    let row = |name: &str| file_row(&s, name).unwrap_or_else(|| panic!("no row for {name}:\n{s}"));
    for (name, mark) in [("chelsea.png", '✗'), ("clock_motion.png", '✗'), ("coffee.png", '✓'), ("camera.png", '✓')]
    {
        assert!(row(name).starts_with(mark), "{name} should be marked {mark}: {}", row(name));
    }
    assert!(row("chelsea.png").contains("tabby → Egyptian cat"), "a mistake shows its truth: {}", row("chelsea.png"));
    assert!(row("coffee.png").contains("espresso 9"), "{}", row("coffee.png"));
    assert!(!row("astronaut.png").starts_with(['✓', '✗']), "unlabeled: no mark: {}", row("astronaut.png"));
    assert!(s.contains("astronaut, dahlia name no class"), "unlabeled folders are reported once: {s}");
    assert!(s.contains("top-1 71.4%"), "{s}");

    // The summary: accuracy and both confusions.
    t.keys(&["t"]);
    let s = t.wait("the summary", |s| s.contains("Triage summary") && s.contains("top-1 accuracy"));
    assert!(s.contains("top-1 accuracy 71.4% (5/7)"), "{s}");
    assert!(s.contains("tabby → Egyptian cat") && s.contains("wall clock → bubble"), "{s}");
    assert!(s.contains("folder name \"astronaut\" matches no class"), "the notes in full: {s}");
    t.keys(&["Escape"]);
    t.wait("the summary to close", |s| !s.contains("Triage summary"));

    // n: the first mistake after astronaut (listing order) is the tabby.
    t.keys(&["n"]);
    t.wait("the first mistake", |s| map_shown(s) && s.contains("tabby/chelsea.png ·"));
    t.keys(&["x"]);
    let s = t.wait("the compare view", |s| {
        map_shown(s)
            && s.contains("compare: predicted | true | predicted − true")
            && s.contains("Egyptian cat over tabby")
    });
    let caption = s.lines().find(|l| l.contains("predicted 3")).unwrap_or_else(|| panic!("captions: {s}"));
    assert!(caption.contains("true 16") && caption.contains("predicted − true"), "three labelled panels: {caption}");
    // n again, still comparing: the wall clock.
    t.keys(&["n"]);
    t.wait("the next mistake compared", |s| {
        map_shown(s) && s.contains("clock_motion.png ·") && s.contains("bubble over wall clock")
    });

    t.keys(&["q"]);
    let s = t.wait("camscope to exit", |s| s.contains("RAW="));
    assert!(s.contains("EXITED=0") && s.contains("RAW=off"), "{s}");
    assert_eq!(t.modes(), "0 1", "alternate screen off, cursor visible");
}

#[test]
fn labels_from_a_csv_and_their_errors_before_the_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("truth.csv");
    std::fs::write(&csv, "path,label\ntabby/chelsea.png,tabby\nespresso/coffee.png,espresso\n").unwrap();
    let t = Tmux::start(&root(), &["samples", "--graphics", "halfblocks", "--labels", csv.to_str().unwrap()], &[]);
    let s = t.wait("the scan to finish", |s| scan_progress(s).is_some_and(|p| p == (9, 9, true)));
    assert!(s.contains("top-1 50.0%"), "two labeled images, one right: {s}");
    assert!(!s.contains("name no class"), "the CSV is the truth, not the folders: {s}");
    assert!(file_row(&s, "chelsea.png").is_some_and(|r| r.starts_with('✗')), "{s}");
    assert!(file_row(&s, "camera.png").is_some_and(|r| !r.starts_with(['✓', '✗'])), "not in the CSV: unlabeled: {s}");
    t.keys(&["q"]);
    let s = t.wait("camscope to exit", |s| s.contains("RAW="));
    assert!(s.contains("EXITED=0") && s.contains("RAW=off"), "{s}");
    drop(t);

    // A CSV without a label column, and --labels with one image: one line each, in the shell.
    std::fs::write(&csv, "path,class\ntabby/chelsea.png,tabby\n").unwrap();
    let line = one_line_error(&camscope(&["samples", "--labels", csv.to_str().unwrap()]));
    assert!(line.contains("truth.csv") && line.contains("missing column"), "{line}");
    let line = one_line_error(&camscope(&["samples/tabby/chelsea.png", "--labels", csv.to_str().unwrap()]));
    assert!(line.contains("is one image"), "{line}");
}

/// Keys must be answered within this while the scan runs (a blocked UI would wait for the
/// whole scan, tens of seconds here).
const KEY_DEADLINE: Duration = Duration::from_secs(5);

#[test]
fn the_scan_never_blocks_the_keys_and_quitting_keeps_its_work() {
    let dir = tempfile::tempdir().unwrap();
    let n = 400;
    make_class_images(dir.path(), n, 64);
    let cache = tempfile::tempdir().unwrap();
    let env = [("CAMSCOPE_CACHE_DIR", cache.path().to_str().unwrap())];
    let args = [dir.path().to_str().unwrap(), "--graphics", "halfblocks"];

    // Quit in the middle of the scan: a clean exit, and what was scanned is in the cache.
    let t = Tmux::start(&root(), &args, &env);
    t.wait("the scan to be under way", |s| scan_progress(s).is_some_and(|(done, _, _)| done >= 8));
    let quit_at = Instant::now();
    t.keys(&["q"]);
    let s = t.wait("camscope to exit", |s| s.contains("RAW="));
    assert!(s.contains("EXITED=0") && s.contains("RAW=off"), "{s}");
    assert!(quit_at.elapsed() < Duration::from_secs(10), "quitting took {:?}", quit_at.elapsed());
    drop(t);

    let t = Tmux::start(&root(), &args, &env);
    let s = t.wait("the scan to resume from the cache", |s| scan_progress(s).is_some());
    let cached = |s: &str| {
        let at = s.find(" from cache")?;
        s[..at].rsplit(' ').next()?.parse::<usize>().ok()
    };
    // Cached results come first, and the count is final once the model runs ("all N from
    // cache" becomes "N from cache"): on a busy machine the idle-priority scan may show a
    // first, partial count.
    let settled = |s: &str| cached(s).is_some() && (!s.contains(" · all ") || scan_progress(s).is_some_and(|p| p.2));
    let s = if settled(&s) { s } else { t.wait("the cached part of the scan to end", |s| settled(s)) };
    assert!(cached(&s).unwrap() >= 8, "the cancelled scan saved its results: {s}");

    // Keys answer at once while the scan runs.
    let mut answered_while_scanning = 0;
    for i in 0..6 {
        let scanning = scan_progress(&t.screen()).is_some_and(|(_, _, done)| !done);
        let sent = Instant::now();
        t.keys(&["j"]);
        let want = format!("Files {}/{n}", i + 2);
        let s = t.wait(&want, |s| s.contains(&want));
        let took = sent.elapsed();
        assert!(took < KEY_DEADLINE, "a key took {took:?} while the scan ran:\n{s}");
        if scanning && scan_progress(&s).is_some_and(|(_, _, done)| !done) {
            answered_while_scanning += 1;
        }
    }
    assert!(answered_while_scanning > 0, "the scan finished before a key could be timed against it");
    let s = t.wait("the scan to finish", |s| scan_progress(s).is_some_and(|p| p == (n, n, true)));
    assert!(s.contains("top-1 "), "{s}");
    t.keys(&["q"]);
    let s = t.wait("camscope to exit", |s| s.contains("RAW="));
    assert!(s.contains("EXITED=0") && s.contains("RAW=off"), "{s}");
}

/// A cache folder that cannot be written (a file stands where it should be): the inspector
/// starts all the same, shows the map, and says in the status bar that the shape cache was
/// not used (issue 13: "a cache folder that is read-only or full").
#[test]
fn an_unwritable_cache_folder_costs_only_the_cache_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let blocked = dir.path().join("cache");
    std::fs::write(&blocked, b"a file where the cache folder should be").unwrap();
    let env = [("CAMSCOPE_CACHE_DIR", blocked.to_str().unwrap())];
    // One image: no triage scan, whose own cache message would replace the note.
    let t = Tmux::start(&root(), &["samples/espresso/coffee.png", "--graphics", "halfblocks"], &env);
    let s = t.wait("the first map and the cache note", |s| map_shown(s) && s.contains("shape cache unavailable"));
    assert!(s.contains("espresso"), "{s}");
    t.keys(&["q"]);
    let s = t.wait("camscope to exit", |s| s.contains("RAW="));
    assert!(s.contains("EXITED=0"), "{s}");
}

/// A key file rebinds actions (the help shows the new keys, the old ones stop working), and a
/// mistake in it is one line in the shell before the terminal is taken over.
#[test]
fn a_key_file_rebinds_the_inspector_and_its_mistakes_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, "quit = [\"F10\"]\nhelp = [\"F1\"]\n").unwrap();
    let t = Tmux::start(
        &root(),
        &["samples/espresso/coffee.png", "--graphics", "halfblocks", "--keys", keys.to_str().unwrap()],
        &[],
    );
    t.wait("the first map", map_shown);
    t.keys(&["q", "?"]);
    t.keys(&["F1"]);
    // Waiting for the popup's title alone can catch a frame half drawn (seen once in CI's
    // test command here: the popup's first six rows over the image): wait for the quit row.
    let s = t.wait("the help, with the new keys", |s| s.contains("quit (Ctrl-C always quits)"));
    assert!(s.lines().any(|l| l.contains("F10") && l.contains("quit (Ctrl-C always quits)")), "{s}");
    t.keys(&["Escape"]);
    let s = t.wait("the help to close", |s| !s.contains("camscope keys"));
    assert!(s.contains("Top 5 classes"), "q no longer quits: {s}");
    t.keys(&["F10"]);
    let s = t.wait("camscope to exit", |s| s.contains("RAW="));
    assert!(s.contains("EXITED=0"), "{s}");

    std::fs::write(&keys, "save = [\"j\"]\n").unwrap();
    let line = one_line_error(&camscope(&["samples", "--keys", keys.to_str().unwrap()]));
    assert!(line.contains("keys.toml") && line.contains("`j` is bound to both down and save"), "{line}");
    let line = one_line_error(&camscope(&["samples", "--keys", "/no/such/keys.toml"]));
    assert!(line.contains("/no/such/keys.toml: cannot read the key bindings"), "{line}");
}
