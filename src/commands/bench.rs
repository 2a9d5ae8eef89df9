//! `camscope bench`: the speed figures the issues ask for, measured in one run on this
//! machine (medians of repeated runs; the machines here are noisy, ratios matter most).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use ndarray::{Array4, Axis};

use camscope::cam::Method;
use camscope::engine::{Classifier, Engine, EngineConfig, GraphSession, LoadedModel, Seed};
use camscope::{imaging, render};

use crate::ModelArgs;

/// The sample photos `bench` uses, compiled in: a `pip install` has no source tree to find
/// them in, and the figures must not depend on where camscope was built.
const SAMPLES: [(&str, &[u8]); 3] = [
    ("espresso/coffee.png", include_bytes!("../../samples/espresso/coffee.png")),
    ("tabby/chelsea.png", include_bytes!("../../samples/tabby/chelsea.png")),
    ("tripod/camera.png", include_bytes!("../../samples/tripod/camera.png")),
];

/// Options of `bench`.
#[derive(Debug, Clone)]
pub struct BenchArgs {
    /// The photo to time; `None`: the compiled-in espresso sample.
    pub image: Option<PathBuf>,
    pub runs: usize,
    pub scorecam_runs: usize,
    pub json: bool,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn time_ms<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t0 = Instant::now();
    let r = f();
    (r, t0.elapsed().as_secs_f64() * 1e3)
}

/// Median of `runs` timings of `f` after one warm-up call.
fn bench(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut v = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t0 = Instant::now();
        f()?;
        v.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(v))
}

pub fn run(args: &BenchArgs, model: &ModelArgs) -> Result<ExitCode> {
    if args.runs == 0 {
        bail!("--runs 0 measures nothing; use 1 or more");
    }
    let path = super::model_path(model)?;
    let opts = model.session_options();
    // The default photo goes through a file like any other, so its decode is timed as one.
    let folder = std::env::temp_dir().join(format!("camscope-bench-photo-{}", std::process::id()));
    let _cleanup_photo = RemoveOnDrop(folder.clone());
    let (image, shown) = match &args.image {
        Some(p) => (p.clone(), p.display().to_string()),
        None => {
            let (name, bytes) = SAMPLES[0];
            let file = folder.join(name.replace('/', "-"));
            std::fs::create_dir_all(&folder)
                .and_then(|()| std::fs::write(&file, bytes))
                .with_context(|| format!("{}: cannot write the sample photo; set TMPDIR", file.display()))?;
            (file, format!("samples/{name} (built in)"))
        }
    };
    let mut rows: Vec<(String, f64, String)> = Vec::new();
    let mut add = |name: &str, value: f64, unit: &str| {
        rows.push((name.to_owned(), value, unit.to_owned()));
        if !args.json {
            println!("  {name:<44} {value:>10.2} {unit}");
        }
    };
    if !args.json {
        println!("camscope bench: {} on {} ({} runs per figure, medians)", path.display(), shown, args.runs);
    }
    // Loading: the model (card, shape probing) and ONNX Runtime sessions.
    let (loaded, load_ms) = time_ms(|| LoadedModel::open(&path, model.card.as_deref(), &opts));
    let mut loaded = loaded?;
    model.apply(&mut loaded);
    add("model load (read, card, shape probe)", load_ms, "ms");
    let session_ms = bench(args.runs.min(20), || {
        GraphSession::from_file(&path, &opts)?;
        Ok(())
    })?;
    add("ONNX Runtime session creation (plain model)", session_ms, "ms");
    let decode_ms = bench(args.runs, || {
        imaging::load_tensor(&image, &loaded.card.input)?;
        Ok(())
    })?;
    add("decode + preprocess", decode_ms, "ms");

    let x = imaging::load_tensor(&image, &loaded.card.input)?;
    let x1 = x.clone().insert_axis(Axis(0));
    let mut plain = Classifier::new(&loaded, &opts)?;
    let forward_ms = bench(args.runs, || {
        plain.run(x1.view())?;
        Ok(())
    })?;
    add("plain ONNX Runtime forward, batch 1", forward_ms, "ms/image");

    let config = EngineConfig { session: opts.clone(), cache_bytes: 0, ..EngineConfig::default() };
    let t0 = std::time::Instant::now();
    let mut engine = Engine::from_model(loaded.clone(), config)?;
    let graphs_ms = t0.elapsed().as_secs_f64() * 1e3;
    add("gradient graphs + body/head sessions", graphs_ms, "ms");
    let provider = engine.provider().0;
    let img = image.clone();
    let t0 = std::time::Instant::now();
    let l = engine.load(&img)?;
    engine.map(&l, Method::GradCam, &Seed::Class(l.scores.argmax()))?;
    let first_ms = t0.elapsed().as_secs_f64() * 1e3;
    add("first map (decode, body, head, Grad-CAM; cold)", first_ms, "ms");
    add("model load to first map (load + graphs + first map)", load_ms + graphs_ms + first_ms, "ms");
    add("  / plain session creation", (load_ms + graphs_ms + first_ms) / session_ms, "x");
    let body_only_ms = bench(args.runs, || {
        engine.body_batch(l.input.view().insert_axis(Axis(0)))?;
        Ok(())
    })?;
    add("body graph (forward + activations), batch 1", body_only_ms, "ms/image");
    let seed = Seed::Class(l.scores.argmax());
    let head_ms = bench(args.runs, || {
        engine.head(&l, &seed)?;
        Ok(())
    })?;
    add("head graph (forward + backward), one class", head_ms, "ms");
    // With the caches off (as here) every switch reruns the head's forward too: what an
    // image without a kept tape costs (a batch run's first class).
    let switch_ms = bench(args.runs, || {
        let m = engine.map(&l, Method::GradCam, &seed)?;
        render::upsample_map(m.normalized.map.view(), 224, 224);
        Ok(())
    })?;
    add("class switch, nothing kept: head + Grad-CAM map + upsample", switch_ms, "ms");
    // The inspector computes the shown image's other top-5 heads in the background (Engine::warm),
    // so stepping through them costs the map alone; another class costs the line above.
    engine.set_cache_bytes(EngineConfig::default().cache_bytes);
    let warm_l = engine.load(&img)?;
    let top5 = warm_l.scores.top_k_indices(5);
    let t0 = std::time::Instant::now();
    engine.warm(&warm_l, &top5, Method::GradCam)?;
    let warm_ms = t0.elapsed().as_secs_f64() * 1e3;
    let mut k = 0;
    let warmed_ms = bench(args.runs, || {
        k += 1;
        let m = engine.map(&warm_l, Method::GradCam, &Seed::Class(top5[k % top5.len()]))?;
        render::upsample_map(m.normalized.map.view(), 224, 224);
        Ok(())
    })?;
    add("class switch to a warmed top-5 class (inspector)", warmed_ms, "ms");
    add("  background warming of the top 5 heads", warm_ms, "ms");
    // Any other class of the shown image: a new head result, but the image's tape (the head's
    // class-independent forward) is kept, so only the head's backward runs. Each run takes a
    // class not seen before, down the ranking.
    let others: Vec<usize> = warm_l.scores.top_k_indices(usize::MAX).into_iter().skip(5).collect();
    if !others.is_empty() {
        let mut j = 0;
        let cold_ms = bench(args.runs, || {
            let c = others[j % others.len()];
            j += 1;
            let m = engine.map(&warm_l, Method::GradCam, &Seed::Class(c))?;
            render::upsample_map(m.normalized.map.view(), 224, 224);
            Ok(())
        })?;
        add("class switch to another class (inspector: backward only)", cold_ms, "ms");
    }
    engine.set_cache_bytes(0);
    let m0 = engine.map(&l, Method::GradCam, &seed)?;
    let upsample_ms = bench(args.runs, || {
        render::upsample_map(m0.normalized.map.view(), 224, 224);
        Ok(())
    })?;
    add("  upsample map to 224x224", upsample_ms, "ms");
    let overlay_ms = bench(args.runs, || {
        render::overlay(&l.view, m0.normalized.map.view(), render::Colormap::Jet, 0.5)?;
        Ok(())
    })?;
    add("  overlay (upsample + colormap + blend)", overlay_ms, "ms");
    // The ratios, measured interleaved (forward, body, Grad-CAM in each round) so that
    // drifts of a noisy machine hit all three alike. Grad-CAM as the issue defines it: body +
    // head + map + upsample, from the preprocessed input.
    let (mut tf, mut tb, mut tg) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..=args.runs {
        let (_, f) = time_ms(|| plain.run(x1.view()));
        let (_, b) = time_ms(|| engine.body_batch(l.input.view().insert_axis(Axis(0))));
        let (r, g) = time_ms(|| -> Result<()> {
            let l2 = engine.body_batch(l.input.view().insert_axis(Axis(0)))?.remove(0);
            let m = engine.map(&l2, Method::GradCam, &seed)?;
            render::upsample_map(m.normalized.map.view(), 224, 224);
            Ok(())
        });
        r?;
        if round > 0 {
            tf.push(f);
            tb.push(b);
            tg.push(g);
        }
    }
    let (forward_i, body_i, gradcam_ms) = (median(tf), median(tb), median(tg));
    add("Grad-CAM per image: body + head + map + upsample", gradcam_ms, "ms/image");
    add("  interleaved rounds: plain forward", forward_i, "ms/image");
    add("  interleaved rounds: body graph", body_i, "ms/image");
    add("  Grad-CAM / plain forward (interleaved)", gradcam_ms / forward_i, "x");
    add("  body / plain forward (interleaved)", body_i / forward_i, "x");
    add("  body / plain forward (separate blocks)", body_only_ms / forward_ms, "x");
    add(
        "  (body + head + map + upsample) / plain forward (blocks)",
        (body_only_ms + switch_ms + upsample_ms) / forward_ms,
        "x",
    );

    for &batch in &[1usize, 4, 16] {
        let n = 32;
        let xs: Vec<_> = (0..n).map(|_| x.view()).collect();
        let big: Array4<f32> = imaging::batch(&xs);
        let per_ms = bench(args.runs.min(5), || {
            for chunk in big.axis_chunks_iter(Axis(0), batch) {
                let loaded_batch = engine.body_batch(chunk)?;
                for l in &loaded_batch {
                    let m = engine.map(l, Method::GradCam, &Seed::Class(l.scores.argmax()))?;
                    render::upsample_map(m.normalized.map.view(), 224, 224);
                }
            }
            Ok(())
        })? / n as f64;
        add(&format!("Grad-CAM throughput, batch {batch}"), 1000.0 / per_ms, "images/s");
    }
    // `--scorecam-runs 0` skips them: on ViT-B (768 channels) Score-CAM is minutes.
    if args.scorecam_runs > 0 {
        let sc_ms = bench(args.scorecam_runs, || {
            engine.map(&l, Method::ScoreCam, &seed)?;
            Ok(())
        })?;
        add("Score-CAM per image", sc_ms, "ms");
        let ab_ms = bench(args.scorecam_runs, || {
            engine.map(&l, Method::AblationCam, &seed)?;
            Ok(())
        })?;
        add("Ablation-CAM per image", ab_ms, "ms");
    }
    if args.json {
        let map: serde_json::Map<String, serde_json::Value> =
            rows.iter().map(|(k, v, u)| (format!("{k} [{u}]"), serde_json::json!(v))).collect();
        println!("{}", serde_json::json!({ "device": provider.to_string(), "figures": map }));
    } else {
        println!("  (execution provider: {provider})");
    }
    Ok(ExitCode::SUCCESS)
}

/// `camscope bench --scan N`: generate N small images in a temporary folder, scan them the
/// way the TUI does (a background thread; the main thread ticks every 16 ms as a UI would)
/// and compare with the plain batched forward. Reports images/s, the ratio, the main
/// thread's worst tick delay, and the peak resident memory of the process.
pub fn run_scan(n: usize, model: &ModelArgs, batch: usize, decoders: Option<usize>) -> Result<ExitCode> {
    use camscope::dataset::scan::Scan;
    use camscope::dataset::truth::{FolderTruth, GroundTruth};
    use camscope::triage::{self, ScanOptions, ScanUpdate};
    use std::sync::mpsc;

    let path = super::model_path(model)?;
    let opts = model.session_options();
    let mut loaded = LoadedModel::open(&path, model.card.as_deref(), &opts)?;
    model.apply(&mut loaded);
    let dir = std::env::temp_dir().join(format!("camscope-bench-scan-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(dir.clone());
    let t0 = Instant::now();
    let sources: Vec<image::RgbImage> = [SAMPLES[1], SAMPLES[0], SAMPLES[2]]
        .iter()
        .map(|(_, bytes)| image::load_from_memory(bytes).map(|i| i.to_rgb8()))
        .collect::<Result<_, _>>()?;
    for i in 0..n {
        let class_dir = dir.join(["tabby", "espresso", "tripod"][i % 3]);
        std::fs::create_dir_all(&class_dir)?;
        // Small, slightly different crops so no two files are identical.
        let src = &sources[i % 3];
        let (w, h) = (src.width(), src.height());
        let off = (i / 3) as u32 % (w.min(h) / 4);
        let crop = image::imageops::crop_imm(src, off, off, w - 2 * off - 1, h - 2 * off - 1).to_image();
        let small = image::imageops::resize(&crop, 64, 64, image::imageops::FilterType::Triangle);
        small.save(class_dir.join(format!("{i:05}.png")))?;
    }
    println!(
        "camscope bench --scan: {n} images of 64x64 generated in {:.1} s under {}",
        t0.elapsed().as_secs_f64(),
        dir.display()
    );

    // The plain batched forward on the same number of preprocessed inputs (decode excluded).
    let x = imaging::load_tensor(&dir.join("tabby/00000.png"), &loaded.card.input)?;
    let xs: Vec<_> = (0..batch).map(|_| x.view()).collect();
    let big: Array4<f32> = imaging::batch(&xs);
    let mut plain = Classifier::new(&loaded, &opts)?;
    let per_batch = bench(10, || {
        plain.run(big.view())?;
        Ok(())
    })?;
    let forward_rate = batch as f64 * 1000.0 / per_batch;
    drop(plain);

    // The scan's own peak: reset the process's high-water mark after loading (the one-off
    // shape probe at load time has its own transient peak, reported separately).
    let load_peak = vm_kb("VmHWM");
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    // The scan on a background thread; the main thread plays the UI.
    let images: Vec<std::path::PathBuf> = Scan::new(&dir)?.collect();
    let (tx, rx) = mpsc::channel::<usize>();
    let scan_model = triage::ScanModel::from(&loaded);
    let scan_dir = dir.clone();
    let labels = loaded.card.labels();
    // The scan cache in a folder of its own (removed at the end), as a user's first scan writes it.
    let cache_dir = std::env::temp_dir().join(format!("camscope-bench-cache-{}", std::process::id()));
    let _cleanup_cache = RemoveOnDrop(cache_dir.clone());
    let worker_cache = cache_dir.clone();
    let (rescan_model, rescan_opts, rescan_labels) = (scan_model.clone(), opts.clone(), labels.clone());
    let started = Instant::now();
    let worker = std::thread::spawn(move || {
        let mut truth = GroundTruth::Folders(FolderTruth::new(&scan_dir, labels));
        let mut o = ScanOptions::new(opts);
        o.batch = batch;
        o.cache_dir = Some(worker_cache);
        o.decoders = decoders;
        triage::scan(&scan_model, &images, &scan_dir, &mut truth, &o, |u| {
            if let ScanUpdate::Result { index, .. } = u {
                let _ = tx.send(index);
            }
            true
        })
    });
    let (mut received, mut worst_tick) = (0usize, 0f64);
    let tick = std::time::Duration::from_millis(16);
    let mut next = Instant::now() + tick;
    loop {
        match rx.recv_timeout(next.saturating_duration_since(Instant::now())) {
            Ok(_) => received += 1,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                worst_tick = worst_tick.max(Instant::now().duration_since(next).as_secs_f64() * 1e3);
                next += tick;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let report = worker.join().map_err(|_| anyhow::anyhow!("the scan thread panicked"))??;
    let secs = started.elapsed().as_secs_f64();
    let rate = received as f64 / secs;
    let peak = vm_kb("VmHWM") / 1024.0;
    println!("  plain batched forward (batch {batch}, decode excluded) {forward_rate:>10.1} images/s");
    println!(
        "  scan (decode + forward, background thread)     {rate:>10.1} images/s  ({} images in {secs:.1} s, batch {}, {} decoding threads)",
        report.computed, report.batch, report.decoders
    );
    println!("  scan / plain forward                            {:>10.2} x", rate / forward_rate);
    println!("  worst delay of the 16 ms UI tick during the scan {worst_tick:>9.1} ms");
    println!("  peak resident memory during the scan (VmHWM)    {peak:>10.1} MB");
    println!("  peak resident memory while loading the model    {:>10.1} MB", load_peak / 1024.0);
    if let Some(note) = &report.cache_note {
        println!("  cache note: {note}");
    }

    // The scan cache: its size, how long reopening it takes, and a second scan served from it.
    let cache_bytes: u64 =
        std::fs::read_dir(&cache_dir)?.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum();
    let key = triage::model_key(&rescan_model)?;
    let t = Instant::now();
    let (cache, outcome) = camscope::dataset::cache::ScanCache::open(&cache_dir, &key, &dir, rescan_model.classes)?;
    let reopen = t.elapsed().as_secs_f64();
    drop(cache);
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let t = Instant::now();
    let images: Vec<std::path::PathBuf> = Scan::new(&dir)?.collect();
    let mut truth = GroundTruth::Folders(FolderTruth::new(&dir, rescan_labels));
    let mut o = ScanOptions::new(rescan_opts);
    o.cache_dir = Some(cache_dir.clone());
    let mut cached = 0usize;
    triage::scan(&rescan_model, &images, &dir, &mut truth, &o, |u| {
        cached += usize::from(matches!(u, ScanUpdate::Result { cached: true, .. }));
        true
    })?;
    let rescan = t.elapsed().as_secs_f64();
    println!(
        "  scan cache                                      {:>10.1} MB  ({:.0} bytes an image, {outcome:?})",
        cache_bytes as f64 / 1e6,
        cache_bytes as f64 / n.max(1) as f64
    );
    println!("  reopen the cache (read and index every record)  {:>10.3} s", reopen);
    println!(
        "  second scan, listing + stat + cache             {:>10.1} images/s  ({cached} of {} from the cache in {rescan:.1} s)",
        images.len() as f64 / rescan.max(1e-9),
        images.len()
    );
    println!("  peak resident memory during the second scan     {:>10.1} MB", vm_kb("VmHWM") / 1024.0);
    Ok(ExitCode::SUCCESS)
}

/// A `/proc/self/status` field in kB (NaN where unavailable).
fn vm_kb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// Deletes a generated folder when the benchmark ends (also on error).
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
