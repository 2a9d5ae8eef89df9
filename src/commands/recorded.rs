//! `camscope OUT` where OUT is a `camscope triage` (or `merge`) output folder: read what the
//! triage recorded, decide which model and images the inspector uses, and refuse, in one
//! line before the terminal is taken over, what would show predictions that do not belong
//! to the model on screen.
//!
//! The workflow is: scan on a cluster, browse the mistakes over SSH or on a laptop. So the
//! model's path, the dataset's path and the file times of the cluster do not hold here;
//! what does is the model's SHA-256 (triage.json format 2) and the card's input settings,
//! which together decide the predictions. Those must match. The layer, the method and the
//! score kind only decide the maps, which are computed here on demand: they default to the
//! triage's (so maps match the PNGs under OUT/mistakes) and may be changed, as the
//! inspector's own keys change them anyway.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use camscope::dataset::shard::Shard;
use camscope::dataset::stats::{ClassProb, ImageResult};
use camscope::engine::{Fault, LoadedModel};
use camscope::tui::Recorded;

use super::triage::{TRIAGE_FORMAT_OLDEST_READ, TRIAGE_FORMAT_VERSION};
use crate::ModelArgs;

/// A class as triage.json records it.
#[derive(Deserialize)]
struct ClassRef {
    index: usize,
    label: String,
}

/// One image of triage.json, the fields the inspector reads.
#[derive(Deserialize)]
struct Row {
    path: String,
    #[serde(rename = "true")]
    truth: Option<ClassRef>,
    predicted: ClassRef,
    true_probability: Option<f32>,
    top5: Vec<(usize, String, f32)>,
}

/// triage.json, the fields the inspector reads (the writer is `commands::triage`). Fields
/// older versions lacked default to empty, so the version check can say "older" instead of
/// a parse error about a missing field.
#[derive(Deserialize)]
pub struct RecordedTriage {
    #[serde(default)]
    format_version: u32,
    model: String,
    #[serde(default)]
    model_sha256: String,
    #[serde(default)]
    dataset: String,
    #[serde(default)]
    config: serde_json::Value,
    #[serde(default)]
    shard: Option<Shard>,
    truth_source: String,
    layer: String,
    method: String,
    #[serde(default)]
    unlabeled_folders: Vec<String>,
    #[serde(default)]
    unreadable: Vec<(String, String)>,
    /// Format 3 on; a format-2 file lists these under `unreadable`.
    #[serde(default)]
    nan_scores: Vec<(String, String)>,
    #[serde(default)]
    warnings: Vec<(String, String)>,
    images: Vec<Row>,
}

/// What `camscope PATH` was pointed at.
pub enum Target {
    /// A folder or an image to list (and scan).
    Images,
    /// A triage output folder.
    Triage(PathBuf),
}

/// Whether PATH is an output folder of camscope; a batch output is refused with what to do
/// instead (its report has no ground truth, so there is nothing to triage in it).
pub fn target(path: &Path) -> Result<Target> {
    if !path.is_dir() {
        return Ok(Target::Images);
    }
    let triage = path.join("triage.json");
    if triage.exists() {
        return Ok(Target::Triage(triage));
    }
    let report = path.join("report.json");
    if report.is_file() {
        // The images the batch explained, to name in the advice (best effort: a damaged
        // report still gets the advice, with a placeholder).
        let dir = std::fs::read(&report)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("dataset").and_then(|d| d.as_str()).map(str::to_owned))
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "DIR".into());
        bail!(
            "{}: a `camscope batch` output (explanations, no ground truth), not a triage; browse its images with `camscope {dir}`, or triage them: `camscope triage {dir} -o OUT` then `camscope OUT`",
            report.display()
        );
    }
    Ok(Target::Images)
}

/// Read and check triage.json: complete, of a version this camscope reads.
pub fn read(file: &Path) -> Result<RecordedTriage> {
    let bytes = std::fs::read(file).with_context(|| format!("{}: cannot read", file.display()))?;
    let t: RecordedTriage = serde_json::from_slice(&bytes).map_err(|e| {
        use serde_json::error::Category;
        let fix = "copy it again from where the triage ran, or rerun `camscope triage` (or `merge`) into that folder";
        match e.classify() {
            Category::Eof => anyhow::anyhow!(
                "{}: truncated ({} bytes, ends inside the JSON at line {}); {fix}",
                file.display(),
                bytes.len(),
                e.line()
            ),
            Category::Syntax | Category::Io => {
                anyhow::anyhow!("{}: not valid JSON ({e}); the file is damaged: {fix}", file.display())
            }
            Category::Data => anyhow::anyhow!(
                "{}: not a triage.json this camscope reads ({e}); rerun `camscope triage` with this version",
                file.display()
            ),
        }
    })?;
    if t.format_version > TRIAGE_FORMAT_VERSION {
        bail!(
            "{}: written by a newer camscope (format {}, this one reads {TRIAGE_FORMAT_VERSION}); upgrade camscope to open it",
            file.display(),
            t.format_version
        );
    }
    if t.format_version < TRIAGE_FORMAT_OLDEST_READ || t.model_sha256.is_empty() || t.dataset.is_empty() {
        bail!(
            "{}: written by an older camscope (format {}, without the model's fingerprint); rerun the same `camscope triage ... -o {}` with this version (its scan cache and the maps already drawn are reused, so it is quick)",
            file.display(),
            t.format_version.max(1),
            file.parent().unwrap_or(Path::new(".")).display()
        );
    }
    if t.images.is_empty() && t.unreadable.is_empty() && t.nan_scores.is_empty() {
        bail!("{}: records no images; rerun `camscope triage` on a folder of images", file.display());
    }
    Ok(t)
}

impl RecordedTriage {
    /// The model path the triage recorded (absolute where it recorded one).
    fn recorded_model(&self) -> PathBuf {
        let canonical = self.config.get("model").and_then(|m| m.as_str()).filter(|m| !m.is_empty());
        PathBuf::from(canonical.unwrap_or(&self.model))
    }

    /// The dataset root the triage recorded (absolute).
    pub fn dataset(&self) -> PathBuf {
        PathBuf::from(&self.dataset)
    }

    /// The triage's target layer (a tensor name).
    pub fn layer(&self) -> &str {
        &self.layer
    }

    /// The triage's CAM method, if this camscope knows it.
    pub fn method(&self) -> Option<camscope::cam::Method> {
        self.method.parse().ok()
    }

    /// The triage's score kind, if recorded.
    pub fn score(&self) -> Option<camscope::grad::ScoreKind> {
        self.config.get("score")?.as_str()?.parse().ok()
    }
}

/// The model to open: `--model` (checked to be the triage's by its SHA-256), else the
/// recorded file, else the bundled model when it is the same file (a triage made with the
/// bundled model on a cluster opens on a laptop without `--model`).
pub fn choose_model(file: &Path, t: &RecordedTriage, args: &ModelArgs) -> Result<PathBuf> {
    let short = |h: &str| h.chars().take(12).collect::<String>();
    let recorded = t.recorded_model();
    if let Some(given) = &args.model {
        let got = super::triage::model_sha256(given)?;
        if got != t.model_sha256 {
            bail!(
                "--model {}: not the model {} was made with ({}, SHA-256 {}…; this file's is {}…); pass --model with that file, or triage again with this one",
                given.display(),
                file.display(),
                recorded.display(),
                short(&t.model_sha256),
                short(&got)
            );
        }
        return Ok(given.clone());
    }
    let bundled = camscope::model::bundled_model().ok();
    for candidate in std::iter::once(recorded.clone()).chain(bundled) {
        if candidate.is_file() && super::triage::model_sha256(&candidate).is_ok_and(|h| h == t.model_sha256) {
            return Ok(candidate);
        }
    }
    if recorded.is_file() {
        bail!(
            "{}: changed since {} was made (its SHA-256 is no longer {}…); pass --model with the file the triage used",
            recorded.display(),
            file.display(),
            short(&t.model_sha256)
        );
    }
    bail!(
        "{}: made with {}, which is not on this machine; pass --model with a copy of it",
        file.display(),
        recorded.display()
    )
}

/// Refuse a card that would not give the recorded predictions: different input settings
/// (size, crop, interpolation, normalisation, EXIF, reduced JPEG decoding) or different
/// class names. Decoding options the user did not give follow the triage's.
pub fn check_card(file: &Path, t: &RecordedTriage, model: &mut LoadedModel) -> Result<()> {
    let recorded = t.config.get("input").cloned().unwrap_or_default();
    let flag = |k: &str| recorded.get(k).and_then(serde_json::Value::as_bool).unwrap_or(false);
    let input = &mut model.card.input;
    input.ignore_exif |= flag("ignore_exif");
    input.exact_decode |= flag("exact_decode");
    let here = serde_json::to_value(&*input)?;
    if here != recorded {
        let field = match (here.as_object(), recorded.as_object()) {
            (Some(a), Some(b)) => {
                a.keys().chain(b.keys()).find(|k| a.get(*k) != b.get(*k)).cloned().unwrap_or_else(|| "input".into())
            }
            _ => "input".into(),
        };
        let show = |v: &serde_json::Value| v.get(&field).map_or_else(|| "unset".into(), ToString::to_string);
        bail!(
            "{}: the predictions were made with the card's input.{field} = {}, but here it is {}; open with the card (--card) and options (--ignore-exif, --exact-decode) the triage used",
            file.display(),
            show(&recorded),
            show(&here)
        );
    }
    let labels = model.card.labels();
    let classes = model.user_classes();
    for r in &t.images {
        for c in r.truth.iter().chain([&r.predicted]) {
            if c.index >= classes {
                bail!(
                    "{}: class {} ({}) is beyond this model's {classes} classes; pass the model and card the triage used",
                    file.display(),
                    c.index,
                    c.label
                );
            }
            if labels.name(c.index) != c.label {
                bail!(
                    "{}: class {} is \"{}\" in the triage but \"{}\" in this card's labels; pass the card the triage used (--card)",
                    file.display(),
                    c.index,
                    c.label,
                    labels.name(c.index)
                );
            }
        }
    }
    Ok(())
}

/// The recorded results for the inspector, with the images under `root`; `out` names them
/// in the status bar.
pub fn recorded(t: RecordedTriage, out: &Path, root: &Path) -> Recorded {
    // Scored and unreadable images together, in the listing's order (by path, as triage
    // lists and merge sorts them).
    let failed = |list: Vec<(String, String)>, fault| list.into_iter().map(move |(p, e)| (p, Err((e, fault))));
    // An image scored, or why not (the error and its kind).
    type Scored = Result<Row, (String, Fault)>;
    let mut all: Vec<(String, Scored)> = t.images.into_iter().map(|r| (r.path.clone(), Ok(r))).collect();
    all.extend(failed(t.unreadable, Fault::Unreadable));
    all.extend(failed(t.nan_scores, Fault::NonFinite));
    all.sort_by(|a, b| Path::new(&a.0).cmp(Path::new(&b.0)));
    let mut images = Vec::with_capacity(all.len());
    let mut truths = Vec::with_capacity(all.len());
    let mut results = Vec::with_capacity(all.len());
    let mut unreadable = Vec::new();
    for (i, (rel, row)) in all.into_iter().enumerate() {
        let path = root.join(&rel);
        match row {
            Ok(r) => {
                let truth = r.truth.as_ref().map(|c| c.index);
                truths.push(truth);
                results.push((
                    i,
                    ImageResult {
                        path: path.clone(),
                        truth,
                        top: r.top5.iter().map(|&(class, _, probability)| ClassProb { class, probability }).collect(),
                        p_truth: r.true_probability,
                    },
                ));
            }
            Err((error, fault)) => {
                truths.push(None);
                unreadable.push((i, format!("{} when triaged: {error}", fault.word()), fault));
            }
        }
        images.push(path);
    }
    let mut notes = vec![format!("ground truth: {} (recorded)", t.truth_source)];
    notes.extend(t.unlabeled_folders);
    notes.extend(t.warnings.into_iter().map(|(p, w)| format!("{p}: {w}")));
    // An unmerged shard is fine to browse, but its figures are that shard's: say so where
    // the figures are (the status bar keeps it; the start message may be replaced).
    let (source, message) = match t.shard {
        Some(s) => (
            format!("triage {} · shard {s}", out.display()),
            Some(format!(
                "shard {s}: only this shard's images and figures; `camscope merge` the {} shards for the whole dataset",
                s.count
            )),
        ),
        None => (format!("triage {}", out.display()), None),
    };
    Recorded { root: root.to_owned(), images, truths, results, unreadable, notes, source, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A format-3 output lists NaN-scored images apart: the inspector marks them "NaN
    /// scores", not "unreadable", in the listing's order with the rest.
    #[test]
    fn recorded_nan_scores_keep_their_kind() {
        let t: RecordedTriage = serde_json::from_value(serde_json::json!({
            "format_version": 3, "model": "m.onnx", "model_sha256": "ab", "dataset": "/d",
            "truth_source": "folder names", "layer": "l", "method": "gradcam",
            "unreadable": [["b/cut.png", "b/cut.png: truncated"]],
            "nan_scores": [["a/dark.png", "a/dark.png: the model gave non-finite values"]],
            "images": [{"path": "c/ok.png", "true": null, "predicted": {"index": 1, "label": "one"},
                        "true_probability": null, "top5": [[1, "one", 0.9]]}],
        }))
        .unwrap();
        let r = recorded(t, Path::new("/out"), Path::new("/d"));
        assert_eq!(r.images, ["/d/a/dark.png", "/d/b/cut.png", "/d/c/ok.png"].map(PathBuf::from));
        assert_eq!(r.results.len(), 1);
        let kinds: Vec<(usize, Fault)> = r.unreadable.iter().map(|(i, _, f)| (*i, *f)).collect();
        assert_eq!(kinds, [(0, Fault::NonFinite), (1, Fault::Unreadable)]);
        assert!(r.unreadable[0].1.starts_with("NaN scores when triaged: a/dark.png"), "{:?}", r.unreadable);
        assert!(r.unreadable[1].1.starts_with("unreadable when triaged: b/cut.png"), "{:?}", r.unreadable);
    }
}
