//! `camscope explain`: top-k classes and a map per image and class, as text (with the overlay
//! shown inline on a terminal), PNG and/or JSON.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use camscope::cam::{MapStatus, Method};
use camscope::engine::metrics;
use camscope::engine::{Engine, EngineConfig, Seed};
use camscope::explanation::{Explanation, Target, Timings, map_rows};
use camscope::grad::ScoreKind;
use camscope::model::Labels;
use camscope::render::{self, Colormap};

use crate::ModelArgs;

/// Options of `explain` beyond the model's.
#[derive(Debug, Clone, clap::Args)]
pub struct ExplainArgs {
    /// Image files
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
    /// Target layer: tensor name, node name, or a unique part of one (default: the last map before pooling)
    #[arg(long, short = 'l')]
    pub layer: Option<String>,
    /// gradcam, gradcam++, xgradcam, hirescam, layercam, eigencam, scorecam, ablationcam, guided-gradcam
    #[arg(long, default_value = "gradcam")]
    pub method: Method,
    /// Class to explain, by index or label (repeatable; default: the top-1 class)
    #[arg(long = "class", short = 'c', value_name = "CLASS")]
    pub classes: Vec<String>,
    /// Contrastive map: evidence for --class against this class
    #[arg(long, value_name = "CLASS")]
    pub versus: Option<String>,
    /// Differentiate the pre-softmax logit or the probability
    #[arg(long, default_value = "logit", value_name = "logit|prob")]
    pub score: ScoreKind,
    /// How many classes to list
    #[arg(long, short = 'k', default_value_t = 5)]
    pub top: usize,
    /// jet, turbo, viridis, inferno, grey
    #[arg(long, default_value = "jet")]
    pub colormap: Colormap,
    /// Weight of the heatmap in the overlay, 0..1
    #[arg(long, default_value_t = 0.5)]
    pub alpha: f64,
    /// Write the overlay PNG here (a folder when there are several images or classes)
    #[arg(long, short = 'o', value_name = "FILE.png|DIR")]
    pub out: Option<PathBuf>,
    /// Replace an existing --out file
    #[arg(long)]
    pub force: bool,
    /// Print explanations as JSON (top-k, map at feature resolution, timings, ...)
    #[arg(long)]
    pub json: bool,
    /// Also compute deletion/insertion AUC and average drop (extra model runs)
    #[arg(long)]
    pub metrics: bool,
    /// Do not show the overlay inline on a terminal
    #[arg(long)]
    pub no_show: bool,
}

/// Resolve `--class` / `--versus` values (index or label) to class indices.
pub fn class_index(labels: &Labels, query: &str) -> Result<usize> {
    labels.lookup(query).map_err(|e| anyhow::anyhow!("--class {query:?}: {e}"))
}

pub fn run(args: &ExplainArgs, model: &ModelArgs) -> Result<ExitCode> {
    if args.top == 0 {
        bail!("--top 0 lists nothing; use --top 1 or more");
    }
    if !(0.0..=1.0).contains(&args.alpha) {
        bail!("--alpha {} is outside 0..1; 0 shows the image only, 1 the heatmap only", args.alpha);
    }
    let path = super::model_path(model)?;
    let config = EngineConfig {
        layer: args.layer.clone(),
        score: args.score,
        session: model.session_options(),
        ..EngineConfig::default()
    };
    let mut engine = Engine::from_model(model.open(&path, args.method.needs().gradients)?, config)?;
    let labels = engine.model().card.labels();
    let classes: Vec<usize> = args.classes.iter().map(|c| class_index(&labels, c)).collect::<Result<_>>()?;
    let versus = args.versus.as_deref().map(|v| class_index(&labels, v)).transpose()?;
    let several = args.images.len() > 1 || classes.len() > 1;
    let out_dir = match &args.out {
        Some(o) if several => {
            std::fs::create_dir_all(o).with_context(|| format!("{}: cannot create the output folder", o.display()))?;
            Some(o.clone())
        }
        Some(o) => {
            // Even with --force, only a regular file is replaced (never a link or a device).
            camscope::render::png::check_replaceable(o)?;
            if o.exists() && !args.force {
                bail!("{}: already exists; choose another --out path or pass --force to replace it", o.display());
            }
            None
        }
        None => None,
    };
    let show = !args.json && !args.no_show && std::io::stdout().is_terminal();
    let (provider, fallback) = engine.provider();
    if let (Some(why), false) = (&fallback, args.json) {
        eprintln!("camscope: running on the CPU (CUDA unavailable: {why})");
    }
    let mut failed = 0;
    let mut explanations = Vec::new();
    for image in &args.images {
        let loaded = match engine.load(image) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("camscope: error: {e}");
                failed += 1;
                continue;
            }
        };
        for w in &loaded.warnings {
            eprintln!("camscope: warning: {w}");
        }
        let top = loaded.scores.top_k(args.top, &labels);
        let wanted = if classes.is_empty() { vec![loaded.scores.argmax()] } else { classes.clone() };
        if !args.json {
            println!("{}", image.display());
            for (rank, p) in top.iter().enumerate() {
                let mark = if wanted.contains(&p.index) { "*" } else { " " };
                println!(
                    "  {mark}{:>2}. {:<32} {:>6.2}%  (class {})",
                    rank + 1,
                    p.label,
                    p.probability * 100.0,
                    p.index
                );
            }
        }
        for &class in &wanted {
            let seed = match versus {
                Some(v) => Seed::Contrast { positive: class, negative: v },
                None => Seed::Class(class),
            };
            let map = engine.map(&loaded, args.method, &seed)?;
            let t0 = std::time::Instant::now();
            let overlay = render::overlay(&loaded.view, map.normalized.map.view(), args.colormap, args.alpha)?;
            let render_ms = t0.elapsed().as_secs_f64() * 1e3;
            let metrics = if args.metrics {
                Some(metrics::metrics(&mut engine, &loaded, class, map.normalized.map.view())?)
            } else {
                None
            };
            let timings = Timings {
                decode_ms: loaded.timings.decode_ms,
                body_ms: loaded.timings.body_ms,
                render_ms,
                ..map.timings
            };
            let ex = Explanation {
                image: image.display().to_string(),
                model: engine.model().path.display().to_string(),
                layer: engine.target().tensor.clone(),
                method: args.method.to_string(),
                score: args.score,
                target: Target {
                    class: loaded.scores.prediction(class, &labels),
                    versus: versus.map(|v| loaded.scores.prediction(v, &labels)),
                },
                top: top.clone(),
                device: provider.to_string(),
                map_status: map.normalized.status.into(),
                map: map_rows(&map.normalized),
                raw_min: map.normalized.raw_min,
                raw_max: map.normalized.raw_max,
                timings,
                metrics,
                warnings: loaded.warnings.clone(),
            };
            let written = match (&args.out, &out_dir) {
                (Some(_), Some(dir)) => {
                    let name = format!("{}.{}.{}.png", stem(image), slug(&labels.name(class)), args.method);
                    Some(render::png::write_png_new(&overlay, &dir.join(name))?)
                }
                (Some(file), None) => {
                    render::png::write_png(&overlay, file)?;
                    Some(file.clone())
                }
                _ => None,
            };
            if !args.json {
                print_summary(&ex, written.as_deref(), map.normalized.status);
                if let Some(gg) = &map.guided {
                    if let (Some(dir), Ok(img)) = (&out_dir, render::deprocess_image(gg.view())) {
                        let name = format!("{}.{}.guided.png", stem(image), slug(&labels.name(class)));
                        let p = render::png::write_png_new(&img, &dir.join(name))?;
                        println!("    guided backprop x Grad-CAM: {}", p.display());
                    }
                }
                if show {
                    let cfg = viuer::Config { absolute_offset: false, width: Some(48), ..Default::default() };
                    let _ = viuer::print(&image::DynamicImage::ImageRgb8(overlay.clone()), &cfg);
                }
            }
            explanations.push(ex);
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&explanations)?);
    }
    Ok(if failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn print_summary(ex: &Explanation, written: Option<&Path>, status: MapStatus) {
    let what = match &ex.target.versus {
        Some(v) => format!("{} vs {}", ex.target.class.label, v.label),
        None => ex.target.class.label.clone(),
    };
    let t = &ex.timings;
    println!(
        "  {} of {what} at {} ({} score, {}): decode {:.1} ms, body {:.1} ms, head {:.1} ms, map {:.1} ms, render {:.1} ms",
        ex.method, ex.layer, ex.score, ex.device, t.decode_ms, t.body_ms, t.head_ms, t.map_ms, t.render_ms
    );
    if status != MapStatus::Ok {
        println!("    note: {} (raw range {:.3e}..{:.3e})", status.describe(), ex.raw_min, ex.raw_max);
    }
    if let Some(m) = &ex.metrics {
        println!(
            "    deletion AUC {:.3} (lower is better), insertion AUC {:.3} (higher is better), average drop {:.1}%, confidence {}",
            m.deletion_auc,
            m.insertion_auc,
            m.average_drop_pct,
            if m.confidence_increased { "increased" } else { "not increased" }
        );
    }
    if let Some(p) = written {
        println!("    overlay: {}", p.display());
    }
}

/// File-name stem of an image.
pub fn stem(p: &Path) -> String {
    p.file_stem().map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned())
}

/// A label as a file-name part: lower case, runs of other characters as `_`.
pub fn slug(label: &str) -> String {
    let mut s = String::new();
    for ch in label.chars() {
        if ch.is_alphanumeric() {
            s.extend(ch.to_lowercase());
        } else if !s.ends_with('_') {
            s.push('_');
        }
    }
    s.trim_matches('_').to_owned()
}
