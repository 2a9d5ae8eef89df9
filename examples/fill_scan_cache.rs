//! Fill the triage scan cache of a generated dataset, for `scripts/scale-curve`.
//!
//! ```sh
//! CAMSCOPE_CACHE_DIR=/tmp/cache cargo run --release --example fill_scan_cache -- DIR
//! ```
//!
//! The scale curve measures what `camscope triage` holds in memory at 10,000 to 1,000,000
//! images; scoring that many files takes hours here (~250 images/s on 2 cores), and the
//! forward pass is not what grows with the dataset. The curve's datasets are hard links of
//! copies of a few sample photos under many names, so every name of one file (one inode) has
//! the same scores: this runs the bundled model once per distinct file, exactly as the scan does
//! (same decode, preprocessing, classifier and probabilities), and records those scores
//! under every path through the cache's public API, keyed as `triage DIR` keys them (model
//! and card hash, the root as given, each path's size and mtime). A `triage DIR` afterwards
//! finds every image in the cache (triage.json's `scan.computed` is 0) and does everything
//! else for real: listing, stat, cache lookups, the maps of the mistakes, the summary, and the
//! JSON / CSV / Parquet outputs.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use ndarray::Axis;

use camscope::dataset::cache::{self, FileStamp, ScanCache};
use camscope::dataset::scan::Scan;
use camscope::engine::{Classifier, LoadedModel, SessionOptions};
use camscope::imaging;
use camscope::scores::ClassScores;
use camscope::triage::{self, ScanModel};

fn main() -> Result<()> {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        bail!("usage: fill_scan_cache DIR (the cache folder from CAMSCOPE_CACHE_DIR, as triage uses it)");
    };
    let t0 = Instant::now();
    let opts = SessionOptions::default();
    let loaded = LoadedModel::open(&camscope::model::bundled_model()?, None, &opts)?;
    let model = ScanModel::from(&loaded);
    let cache_dir = cache::default_dir()?;
    let (mut cache, outcome) = ScanCache::open(&cache_dir, &triage::model_key(&model)?, &dir, model.classes)?;
    let mut classifier = Classifier::new(&loaded, &opts)?;
    let spec = &model.card.input;
    // Probabilities by (device, inode): one forward pass per distinct file.
    let mut scores: HashMap<(u64, u64), Vec<f32>> = HashMap::new();
    let (mut entries, mut since_save) = (0usize, 0usize);
    for path in Scan::new(&dir)? {
        let meta = std::fs::metadata(&path).with_context(|| format!("{}: cannot stat", path.display()))?;
        let stamp = FileStamp::of(&meta).with_context(|| format!("{}: no modification time", path.display()))?;
        let id = (meta.dev(), meta.ino());
        let probabilities = match scores.entry(id) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let decoded = imaging::load_image(&path, &spec.decode_options())?;
                let x = imaging::normalize(&imaging::model_view(&decoded.rgb, spec), spec);
                let out = classifier.run(x.insert_axis(Axis(0)).view())?;
                let row: Vec<f32> = out.row(0).to_vec();
                e.insert(ClassScores::from_output(&row, model.head).probabilities)
            }
        };
        cache.insert(&path, stamp, probabilities);
        entries += 1;
        since_save += 1;
        if since_save == 2000 {
            cache.save()?;
            since_save = 0;
        }
    }
    cache.save()?;
    println!(
        "fill_scan_cache: {entries} entries from {} distinct files in {:.1} s ({outcome:?}) -> {}",
        scores.len(),
        t0.elapsed().as_secs_f64(),
        cache.file().display()
    );
    Ok(())
}
