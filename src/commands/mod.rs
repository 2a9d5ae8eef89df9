//! Per-command glue between the CLI and the library.

pub mod batch;
pub mod bench;
pub mod doctor;
pub mod explain;
pub mod export;
pub mod inspect;
pub mod layers;
pub mod merge;
pub mod progress;
pub mod recorded;
pub mod triage;

use anyhow::{Context, Result};

use camscope::engine::LoadedModel;
use camscope::model;

use crate::ModelArgs;

/// An error chain as one line: `context: cause: cause`.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in e.chain() {
        let s = c.to_string();
        // thiserror's transparent variants repeat their source: skip exact repeats.
        if parts.last().is_none_or(|p| !p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}

/// `--shard K/N` and `--shards N`, shared by `batch` and `triage`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ShardArgs {
    /// Process only shard K of N (by a fixed hash of each image's path; default: from a Slurm array's or Kubernetes Indexed Job's environment), then `camscope merge` the outputs
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// Number of shards of a Kubernetes Indexed Job (its completions; JOB_COMPLETION_INDEX gives K)
    #[arg(long, value_name = "N")]
    pub shards: Option<u64>,
}

impl ShardArgs {
    /// The shard this run takes (`None`: the whole dataset), from the flags or the scheduler's
    /// environment; says on stderr which one and why, since a job that silently took a
    /// shard (or silently did not) would be hard to debug from a cluster's logs.
    pub fn detect(&self) -> Result<Option<camscope::dataset::shard::Shard>> {
        let detected =
            camscope::dataset::shard::Shard::detect(self.shard.as_deref(), self.shards, |k| std::env::var(k).ok())?;
        Ok(detected.map(|d| {
            eprintln!("camscope: taking shard {} (from {})", d.shard, d.source);
            d.shard
        }))
    }
}

/// The dataset root as outputs record it for `merge`: absolute, so shards run from other
/// working directories still agree.
pub fn dataset_id(dir: &std::path::Path) -> String {
    dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()).display().to_string()
}

/// The model named by `--model`, or the bundled one.
pub fn model_path(args: &ModelArgs) -> Result<std::path::PathBuf> {
    match &args.model {
        Some(p) => Ok(p.clone()),
        None => Ok(model::bundled_model().context("no --model given")?),
    }
}

/// Load the model named by `--model` (or the bundled one).
pub fn load_model(args: &ModelArgs) -> Result<LoadedModel> {
    Ok(args.open(&model_path(args)?, false)?)
}

/// Write the Parquet report `name` through `journal` (atomically, streamed: see
/// [`camscope::dataset::journal::Journal::write_report_with`]), `fill` giving it its rows. An
/// encoding error comes back as itself, not as the write error it must be turned into on its
/// way out of the journal, so the user reads what went wrong.
pub fn write_table<J: serde::Serialize + serde::de::DeserializeOwned>(
    journal: &camscope::dataset::journal::Journal<J>,
    name: &str,
    fill: impl FnOnce(
        camscope::dataset::table::ParquetStream<&mut std::io::BufWriter<std::fs::File>>,
    ) -> Result<&mut std::io::BufWriter<std::fs::File>>,
) -> Result<()> {
    let path = journal.out().join(name);
    let mut table_error = None;
    let written = journal.write_report_with(name, |w| {
        fill(camscope::dataset::table::ParquetStream::new(w, &path)).map(|_| ()).map_err(|e| {
            table_error = Some(e);
            std::io::Error::other("encoding")
        })
    });
    if let Some(e) = table_error {
        return Err(e);
    }
    Ok(written?)
}

/// The name of `p` relative to `root`, as reports, journals and shard assignment key it.
pub fn rel_name(root: &std::path::Path, p: &std::path::Path) -> String {
    p.strip_prefix(root).unwrap_or(p).to_string_lossy().into_owned()
}

/// The images under `dir` that belong to `shard` (all without one), packed (see
/// [`camscope::dataset::paths::PathList`]: the listing is what a batch or triage run holds for
/// every image), with the listing (its counts of skipped files) and how many images it found
/// in all shards.
pub fn shard_listing(
    dir: &std::path::Path,
    shard: Option<camscope::dataset::shard::Shard>,
) -> Result<(camscope::dataset::scan::Scan, camscope::dataset::paths::PathList, usize)> {
    let mut listing = camscope::dataset::scan::Scan::new(dir)?;
    let (mut images, mut all) = (camscope::dataset::paths::PathList::new(dir), 0usize);
    for p in listing.by_ref() {
        all += 1;
        if shard.is_none_or(|s| s.contains(std::path::Path::new(&rel_name(dir, &p)))) {
            images.push(&p);
        }
    }
    Ok((listing, images, all))
}

/// Watches a run's results for a model that scores every image NaN or infinite. Such a
/// model used to leave a triage of "9 unreadable images" and an exit status of 3, which
/// sent users looking for broken files; and on a million images it said nothing for hours.
/// Now a run warns once, as soon as the first [`NanWatch::WARN_AFTER`] images have all
/// scored NaN, and [`NanWatch::all_nan`] lets it end with the model named as the cause.
/// It only warns early, never stops the run: a dataset sorted by folder may start with
/// many images (blank frames, say) that this model alone fails on.
#[derive(Debug, Default)]
pub struct NanWatch {
    finite: usize,
    nan: usize,
    warned: bool,
}

impl NanWatch {
    /// Images with NaN scores and none finite before the early warning.
    pub const WARN_AFTER: usize = 32;

    /// Record one image's outcome: finite scores, or NaN / infinite ones.
    pub fn record(&mut self, finite: bool, model: &std::path::Path) {
        if finite {
            self.finite += 1;
            return;
        }
        self.nan += 1;
        if !self.warned && self.finite == 0 && self.nan == Self::WARN_AFTER {
            self.warned = true;
            eprintln!("camscope: warning: {}", Self::cause(model, &format!("each of the first {} images", self.nan)));
        }
    }

    /// The error for a run in which no image scored finite and at least one scored NaN.
    pub fn all_nan(&self, model: &std::path::Path) -> Option<String> {
        (self.finite == 0 && self.nan > 0).then(|| Self::cause(model, &format!("every image ({})", self.nan)))
    }

    fn cause(model: &std::path::Path, which: &str) -> String {
        format!(
            "the model {} gave NaN or infinite scores for {which} and finite ones for none: the model or its card is at fault, not the images; test it with `camscope explain IMAGE --model {}` or in onnxruntime, re-export it, and check the card's mean/std",
            model.display(),
            model.display()
        )
    }
}
