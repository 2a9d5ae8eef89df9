//! `camscope merge OUT_1 ... OUT_N -o OUT`: the outputs of `batch` or `triage` shards
//! (`--shard K/N`, or a Slurm / Kubernetes array) combined into exactly what one unsharded
//! run writes. Every check runs before anything is written, so a refused merge leaves OUT as
//! it was.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use camscope::dataset::json_stream;
use camscope::dataset::shard::{self, Shard};

/// One shard's report (triage.json, report.json), read lazily: every field but the rows, as
/// `H`, and where the rows start.
pub struct ShardFile<H> {
    pub file: PathBuf,
    pub head: H,
    rows_at: u64,
}

impl<H: serde::de::DeserializeOwned> ShardFile<H> {
    /// `dir/name`, whose top-level field `rows` holds the per-image rows.
    fn read(dir: &Path, name: &str, rows: &str) -> Result<Self> {
        let file = dir.join(name);
        let unmergeable =
            || format!("{}: not a {name} this camscope can merge; rerun that shard with this version", file.display());
        let split = json_stream::split_object(&file, rows).with_context(unmergeable)?;
        let head = serde_json::from_slice(&split.rest).with_context(unmergeable)?;
        let rows_at = split.field_at.with_context(unmergeable)?;
        Ok(Self { file, head, rows_at })
    }
}

/// A shard report's head (every field but the rows): which run and which shard it is.
pub trait ShardHead: serde::de::DeserializeOwned {
    fn identity(&self) -> Identity;
}

/// Every shard's report `name` (rows in its field `images`) read lazily, checked to be the
/// shards of one run that make a whole (see [`check`]).
pub fn open_shards<H: ShardHead>(inputs: &[PathBuf], name: &str) -> Result<Vec<ShardFile<H>>> {
    let files: Vec<ShardFile<H>> = inputs.iter().map(|d| ShardFile::read(d, name, "images")).collect::<Result<_>>()?;
    let ids: Vec<Identity> = files.iter().map(|f| f.head.identity()).collect();
    check(inputs, &ids)?;
    Ok(files)
}

/// A per-image row of a shard's report: where it sorts and which shard it belongs to.
pub trait ShardRow: serde::de::DeserializeOwned {
    /// The image's path relative to the dataset root.
    fn path(&self) -> &str;
}

/// The rows of all shards in the order one unsharded run lists them (by path, as
/// [`camscope::dataset::scan`] sorts), with the index of the shard each came from. Each
/// shard's rows are a subsequence of that order, so merging them needs one row per shard in
/// memory, not the shards' million rows; a shard's row out of that order, or outside the
/// shard by this camscope's assignment, is an error.
pub struct MergedRows<'a, T> {
    inputs: &'a [PathBuf],
    shards: Vec<Shard>,
    streams: Vec<json_stream::Elements<T>>,
    next: Vec<Option<T>>,
    last: Vec<Option<String>>,
}

impl<'a, T: ShardRow> MergedRows<'a, T> {
    /// `files[k]` read from `inputs[k]` by [`open_shards`].
    pub fn open<H: ShardHead>(inputs: &'a [PathBuf], files: &[ShardFile<H>]) -> Result<Self> {
        let mut rows = Self {
            inputs,
            shards: files.iter().map(|f| f.head.identity().shard.expect("checked: every input is a shard")).collect(),
            streams: files.iter().map(|f| json_stream::Elements::open(&f.file, f.rows_at)).collect::<Result<_, _>>()?,
            next: Vec::new(),
            last: vec![None; files.len()],
        };
        rows.next = (0..files.len()).map(|k| rows.pull(k)).collect::<Result<_>>()?;
        Ok(rows)
    }

    /// Shard `k`'s next row, checked.
    fn pull(&mut self, k: usize) -> Result<Option<T>> {
        let Some(row) = self.streams[k].next().transpose()? else { return Ok(None) };
        let s = self.shards[k];
        if !s.contains(Path::new(row.path())) {
            bail!(
                "{}: {} is not in shard {s} by this camscope's assignment; merge outputs of one camscope version",
                self.inputs[k].display(),
                row.path()
            );
        }
        if self.last[k].as_deref().is_some_and(|last| Path::new(last) >= Path::new(row.path())) {
            bail!(
                "{}: {} is out of the order camscope writes its reports in; rerun that shard with this version",
                self.inputs[k].display(),
                row.path()
            );
        }
        self.last[k] = Some(row.path().to_owned());
        Ok(Some(row))
    }
}

impl<T: ShardRow> Iterator for MergedRows<'_, T> {
    type Item = Result<(usize, T)>;

    fn next(&mut self) -> Option<Self::Item> {
        // The smallest path among the shards' next rows (a linear look: a handful to a few
        // hundred shards, against a parse per row).
        let k = (0..self.next.len()).filter(|&k| self.next[k].is_some()).min_by(|&a, &b| {
            Path::new(self.next[a].as_ref().unwrap().path()).cmp(Path::new(self.next[b].as_ref().unwrap().path()))
        })?;
        let row = self.next[k].take().expect("chosen among the present");
        match self.pull(k) {
            Ok(next) => self.next[k] = next,
            Err(e) => return Some(Err(e)),
        }
        Some(Ok((k, row)))
    }
}

/// What shards of one run must agree on, as each output records it.
pub struct Identity {
    /// The dataset root (absolute).
    pub dataset: String,
    /// The run's settings (model file with size and mtime, layer, method, card input...).
    pub config: serde_json::Value,
    /// Anything else that must match, by name (triage: the ground truth).
    pub extra: Vec<(&'static str, String)>,
    pub shard: Option<Shard>,
}

/// Check that shard outputs come from one run and make a whole; the number of shards.
pub fn check(inputs: &[PathBuf], ids: &[Identity]) -> Result<u64> {
    let name = |i: usize| inputs[i].display().to_string();
    for (i, id) in ids.iter().enumerate() {
        if id.shard.is_some() && (id.config.is_null() || id.dataset.is_empty()) {
            bail!("{}: written by an older camscope (no run identity); rerun that shard with this version", name(i));
        }
    }
    let named: Vec<(String, Option<Shard>)> = ids.iter().enumerate().map(|(i, id)| (name(i), id.shard)).collect();
    let n = shard::check_complete(&named)?;
    let first = &ids[0];
    for (i, id) in ids.iter().enumerate().skip(1) {
        if id.dataset != first.dataset {
            bail!(
                "{} is a shard of dataset {} but {} of {}; merge shards of one dataset",
                name(i),
                id.dataset,
                name(0),
                first.dataset
            );
        }
        if let Some(field) = differing(&first.config, &id.config) {
            let show = |v: &serde_json::Value| v.get(&field).map_or("unset".into(), |v| v.to_string());
            bail!(
                "{} and {} were made with different {field} ({} vs {}); merge shards of one run (same model, card, layer and method)",
                name(0),
                name(i),
                show(&first.config),
                show(&id.config)
            );
        }
        for ((what, a), (_, b)) in first.extra.iter().zip(&id.extra) {
            if a != b {
                bail!("{} and {} have different {what} ({a} vs {b}); merge shards of one run", name(0), name(i));
            }
        }
    }
    Ok(n)
}

/// The first top-level setting where two configurations differ (`None`: equal).
fn differing(a: &serde_json::Value, b: &serde_json::Value) -> Option<String> {
    if a == b {
        return None;
    }
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else { return Some("settings".into()) };
    a.keys().chain(b.keys()).find(|k| a.get(*k) != b.get(*k)).cloned()
}

pub fn run(inputs: &[PathBuf], out: &Path) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    if inputs.is_empty() {
        bail!("merge needs the output folders of the shards: camscope merge OUT_1 ... OUT_N -o OUT");
    }
    let out_c = out.canonicalize().ok();
    let mut kinds = Vec::new();
    for dir in inputs {
        if !dir.is_dir() {
            bail!("{}: no such folder; give the output folders of the shards", dir.display());
        }
        if out_c.is_some() && dir.canonicalize().ok() == out_c {
            bail!("{}: is one of the shards; merge into another folder (-o)", out.display());
        }
        let (triage, batch) = (dir.join("triage.json").is_file(), dir.join("report.json").is_file());
        kinds.push(match (triage, batch) {
            (true, false) => "triage",
            (false, true) => "batch",
            (true, true) => {
                bail!("{}: holds both a triage.json and a report.json; merge folders of one kind", dir.display())
            }
            (false, false) => bail!(
                "{}: holds no triage.json or report.json; is that shard finished? (rerun it, it resumes)",
                dir.display()
            ),
        });
    }
    if let Some(i) = kinds.iter().position(|k| *k != kinds[0]) {
        bail!(
            "{} is a {} output but {} a {} output; merge shards of one command",
            inputs[0].display(),
            kinds[0],
            inputs[i].display(),
            kinds[i]
        );
    }
    let code = match kinds[0] {
        "triage" => super::triage::merge(inputs, out)?,
        _ => super::batch::merge(inputs, out)?,
    };
    eprintln!("camscope merge: {} shards in {:.2} s", inputs.len(), started.elapsed().as_secs_f64());
    Ok(code)
}
