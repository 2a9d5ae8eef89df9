//! Mutation fuzzing on stable Rust, over everything camscope reads from files it did not
//! write: ONNX models (decoding, graph analysis, layer candidates, gradient graphs), model
//! cards, labels files, the triage scan cache and images.
//!
//! - `cargo test --test fuzz` (CI): replays the committed corpus and every regression input
//!   under `tests/data/fuzz/`, then runs [`CI_EXECS`] mutated cases from a fixed seed.
//! - `scripts/fuzz-soak` (release, `--ignored`): the same with `FUZZ_EXECS` cases (default
//!   1,000,000) and `FUZZ_SEED` (default: the time).
//! - `CAMSCOPE_FUZZ_GENERATE=1 cargo test --test fuzz -- --ignored generate_corpus` rebuilds
//!   the committed corpus (needs ONNX Runtime: shapes are measured as the real loader does).
//!
//! Each case runs on a worker thread under `catch_unwind` with a watchdog (a case over
//! [`case_limit`] is a hang; the stuck worker is abandoned and a new one started); a counting
//! global allocator refuses any single allocation over [`MAX_ALLOC`] and records the peak.
//! Panicking, hanging or over-allocating inputs are written to `target/tmp/fuzz/` for
//! reproduction (add them under `tests/data/fuzz/regressions/<target>/` once fixed).
//!
//! The mutator: bit flips, interesting bytes and integers, inserted / deleted / duplicated
//! chunks, splices and crossovers between corpus files, truncation, and structure-aware
//! mutations: protobuf fields parsed as a tree (delete, duplicate, swap, rename a tensor to
//! another name of the model, interesting varints, with every enclosing length fixed), TOML
//! lines and values, label lines and awkward Unicode, the cache's header fields and checksum,
//! PNG chunk CRCs. Inputs that reach a new outcome (a new error kind, a further stage) join
//! the in-memory corpus.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use camscope::dataset::cache::{FileStamp, ModelHash, ScanCache};
use camscope::grad::{Analysis, MapLayout, ScoreKind, TokenSpec};
use camscope::model::labels::Labels;
use camscope::model::{CardSource, Layout as CardLayout, ModelCard, infer_layout};
use camscope::onnx::{self, value_info_dims};

/// Mutated cases in the CI run (on top of the corpus replay).
const CI_EXECS: u64 = 20_000;
/// The CI run's seed.
const CI_SEED: u64 = 0x00C4_4D5C_0FE5;
/// Any single allocation above this fails (a case must not ask for more).
const MAX_ALLOC: usize = 1 << 30;
/// Live heap above which a case is reported as unbounded.
const MAX_LIVE: usize = 6 << 30;

// ---------------------------------------------------------------------------------------
// Memory: a counting allocator.

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// The current case's bytes, for the report of an allocation refused mid-case.
static CURRENT: Mutex<Option<Running>> = Mutex::new(None);
/// A case in progress: its target's name and its bytes.
type Running = (&'static str, Arc<Vec<u8>>);
static REFUSED: AtomicUsize = AtomicUsize::new(0);
static IN_REFUSAL: AtomicBool = AtomicBool::new(false);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !admit(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc(layout) };
        counted(p, layout.size())
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !admit(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc_zeroed(layout) };
        counted(p, layout.size())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() && !admit(new_size) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            counted(p, new_size);
        }
        p
    }
}

fn counted(p: *mut u8, size: usize) -> *mut u8 {
    if !p.is_null() {
        let now = LIVE.fetch_add(size, Ordering::Relaxed) + size;
        PEAK.fetch_max(now, Ordering::Relaxed);
    }
    p
}

/// Whether an allocation of `size` bytes may go ahead. A refused one is reported (once at a
/// time: the report itself allocates) with the case that asked for it; the caller then gets
/// null, which a fallible allocation (`try_reserve`) survives and an infallible one aborts.
fn admit(size: usize) -> bool {
    if size <= MAX_ALLOC && LIVE.load(Ordering::Relaxed).saturating_add(size) <= MAX_LIVE {
        return true;
    }
    if !IN_REFUSAL.swap(true, Ordering::SeqCst) {
        REFUSED.fetch_add(1, Ordering::Relaxed);
        let current = CURRENT.try_lock().ok().and_then(|c| c.clone());
        if let Some((target, bytes)) = current {
            let path = save_finding("oom", target, &bytes);
            eprintln!("fuzz: {target}: a case asked for {size} bytes (limit {MAX_ALLOC}); input saved as {path:?}");
        }
        IN_REFUSAL.store(false, Ordering::SeqCst);
    }
    false
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Peak resident set size of this process (Linux), in bytes.
fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

// ---------------------------------------------------------------------------------------
// Randomness: SplitMix64, seeded.

#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }

    /// True with probability `1/n`.
    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A stable hash of a case's bytes: choices a target makes (which layer, which query) come
/// from it, so a saved input replays exactly.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

// ---------------------------------------------------------------------------------------
// Targets.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Target {
    Onnx,
    Card,
    Labels,
    Cache,
    Image,
}

const TARGETS: [Target; 5] = [Target::Onnx, Target::Card, Target::Labels, Target::Cache, Target::Image];

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Onnx => "onnx",
            Target::Card => "card",
            Target::Labels => "labels",
            Target::Cache => "cache",
            Target::Image => "image",
        }
    }

    /// Share of the executions, in percent.
    fn weight(self) -> usize {
        match self {
            Target::Onnx => 35,
            Target::Image => 25,
            Target::Card => 15,
            Target::Labels => 10,
            Target::Cache => 15,
        }
    }

    /// Mutated inputs are cut to this size (seeds may be larger: the bundled model).
    fn max_len(self) -> usize {
        match self {
            Target::Onnx => 4 << 20,
            Target::Image => 1 << 20,
            Target::Card | Target::Labels => 64 << 10,
            Target::Cache => 256 << 10,
        }
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fuzz_data() -> PathBuf {
    root().join("tests/data/fuzz")
}

fn findings_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz")
}

fn save_finding(kind: &str, target: &str, bytes: &[u8]) -> PathBuf {
    let dir = findings_dir();
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{kind}-{target}-{:016x}.bin", fnv(bytes)));
    let _ = std::fs::write(&path, bytes);
    path
}

/// Per-process state the targets share (read-only while fuzzing, except the cache folder).
struct World {
    cache_dir: PathBuf,
    cache_root: PathBuf,
    /// The cache file `ScanCache::open` reads for this model and root.
    cache_file: PathBuf,
    cache_model: ModelHash,
    /// A small, valid input spec for preprocessing decoded images.
    spec: camscope::model::InputSpec,
}

impl World {
    fn new() -> Self {
        let base = std::env::temp_dir().join(format!("camscope-fuzz-{}-{}", std::process::id(), unique()));
        let cache_dir = base.join("cache");
        let cache_root = base.join("data");
        std::fs::create_dir_all(&cache_dir).unwrap();
        std::fs::create_dir_all(&cache_root).unwrap();
        let card = "[input]\nlayout = \"NCHW\"\nheight = 12\nwidth = 16\nresize = \"center-crop\"\ncrop_fraction = 0.875\ninterpolation = \"bicubic\"\nmean = [0.485, 0.456, 0.406]\nstd = [0.229, 0.224, 0.225]\npixel_scale = 0.00392156862745098\n";
        let spec = ModelCard::parse(card, Path::new("fuzz.toml"), CardSource::Inferred).expect("fuzz card").input;
        let cache_model = ModelHash::of_bytes(b"camscope fuzz model");
        let cache_file = ScanCache::open(&cache_dir, &cache_model, &cache_root, 1).expect("open").0.file().to_owned();
        Self { cache_dir, cache_root, cache_file, cache_model, spec }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(base) = self.cache_dir.parent() {
            let _ = std::fs::remove_dir_all(base);
        }
    }
}

fn unique() -> usize {
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Run one case. The result is the outcome's signature: which stage it reached and the
/// kind of error that stopped it (digits dropped), for corpus feedback.
fn run(target: Target, bytes: &[u8], world: &World) -> String {
    match target {
        Target::Onnx => run_onnx(bytes),
        Target::Card => run_card(bytes, world),
        Target::Labels => run_labels(bytes),
        Target::Cache => run_cache(bytes, world),
        Target::Image => run_image(bytes, world),
    }
}

/// An error message reduced to its kind: digits and quoted names dropped, first words kept.
fn kind_of(msg: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    for c in msg.chars() {
        match c {
            '`' | '"' => quoted = !quoted,
            _ if quoted || c.is_ascii_digit() => {}
            _ => out.push(c),
        }
        if out.len() >= 60 {
            break;
        }
    }
    out
}

/// The ONNX loader and the model analysis, as `LoadedModel::open` and the explainers use
/// them, with shapes from the model's declarations standing in for ONNX Runtime's probe.
fn run_onnx(bytes: &[u8]) -> String {
    let path = Path::new("fuzz.onnx");
    let model = match onnx::decode_model(bytes, path) {
        Ok(m) => m,
        Err(e) => return format!("decode: {}", kind_of(&e.to_string().replace("fuzz.onnx: ", ""))),
    };
    let h = fnv(bytes);
    let graph = model.graph.as_ref().expect("decode_model checks the graph");
    // The card in the model's metadata, as the loader reads it.
    let meta =
        |k: &str| model.metadata_props.iter().find(|p| p.key.as_deref() == Some(k)).and_then(|p| p.value.clone());
    let card = meta("camscope.card").map(|t| ModelCard::parse(&t, path, CardSource::Metadata));
    // The probe's integer constants, recorded by `generate_corpus`.
    let ints: HashMap<String, Vec<i64>> =
        meta("camscope.fuzz.ints").and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    let inits: HashSet<&str> = graph.initializer.iter().filter_map(|t| t.name.as_deref()).collect();
    let Some(input) = graph.input.iter().find(|v| v.name.as_deref().is_some_and(|n| !inits.contains(n))) else {
        return "no input".into();
    };
    let input_name = input.name.clone().unwrap_or_default();
    let in_dims = value_info_dims(input).and_then(|(_, d)| d).unwrap_or_default();
    let Some(output) = graph.output.first().and_then(|o| o.name.clone()) else { return "no output".into() };
    let mut card_layout = None;
    if let Some(Ok(c)) = &card {
        let _ = c.check_input(path, &input_name, &in_dims);
        card_layout = Some(c.input.layout);
    }
    let layout = match card_layout.or_else(|| infer_layout(&in_dims).map(|(l, _, _)| l)) {
        Some(CardLayout::Nhwc) => MapLayout::Nhwc,
        _ => MapLayout::Nchw,
    };
    // A stand-in for the probe: every declared shape measured at batch 1 and batch 2.
    let (mut at1, mut at2, mut types) = (Vec::new(), Vec::new(), HashMap::new());
    for v in graph.input.iter().chain(&graph.output).chain(&graph.value_info) {
        let (Some(name), Some((t, Some(dims)))) = (v.name.clone(), value_info_dims(v)) else { continue };
        let at = |n: i64| -> Vec<i64> {
            dims.iter()
                .enumerate()
                .map(|(i, &d)| {
                    if d >= 0 {
                        d
                    } else if i == 0 {
                        n
                    } else {
                        3
                    }
                })
                .collect()
        };
        at1.push((name.clone(), at(1)));
        at2.push((name.clone(), at(2)));
        types.insert(name, t);
    }
    let mut a = match Analysis::new(model, &input_name, &output, layout) {
        Ok(a) => a,
        Err(e) => return format!("analysis: {}", kind_of(&e.to_string())),
    };
    let targets = a.probe_targets();
    let constants = a.computed_constants();
    if (h >> 44) % 8 == 0 {
        let (probe, plan) = onnx::shapes::probe_model(a.model(), &targets, &constants);
        let record: Vec<i64> = bytes.iter().take(64).map(|&b| i64::from(b as i8)).collect();
        let _ = onnx::shapes::decode_probe(&plan, &record);
        drop(probe);
    }
    a.add_measured(&at1, &at2, &types);
    a.add_constant_values(&ints);
    a.set_sigmoid(h & 1 == 1);
    if h & 6 == 6 {
        a.set_tokens(Some(if h & 8 == 0 {
            TokenSpec::from_str_lossy("1+14x14")
        } else {
            TokenSpec::from_str_lossy("0")
        }));
    }
    let _ = a.inferred_types();
    let classes = a.classes().map_err(|e| kind_of(&e.to_string()));
    let cands = a.candidates();
    let _ = a.ambiguous_tokens();
    let mut sig = format!("classes {} cands {}", classes.is_ok(), cands.len().min(3));
    let query = match (h >> 8) % 4 {
        0 => None,
        1 => cands.get((h >> 16) as usize % cands.len().max(1)).map(|c| c.tensor.clone()),
        2 => cands.get((h >> 16) as usize % cands.len().max(1)).map(|c| c.node.chars().rev().take(5).collect()),
        _ => {
            let at = (h >> 20) as usize % bytes.len();
            Some(String::from_utf8_lossy(&bytes[at..(at + 3).min(bytes.len())]).into_owned())
        }
    };
    let target = match a.resolve_layer(query.as_deref()) {
        Ok(t) => t,
        Err(e) => return format!("{sig} layer: {}", kind_of(&e.to_string())),
    };
    let _ = (target.chw(), target.shape_string());
    let kind = if h & 16 == 0 { ScoreKind::Logit } else { ScoreKind::Prob };
    for (i, plan) in
        [a.plan(&target, kind, h & 32 == 0), a.plan_for_sessions(&target, kind, false), a.plan_forward(&target, kind)]
            .into_iter()
            .enumerate()
    {
        match plan {
            Ok(p) if (h >> 40) % 4 == 0 => {
                sig.push_str(&format!(" plan{i} ok"));
                let _ = onnx::encode_model(&p.body()).len();
                let _ = onnx::encode_model(&p.head()).len();
                let _ = onnx::encode_model(&p.scores_model()).len();
                if i == 0 {
                    let _ = onnx::encode_model(&p.export()).len();
                }
                let _ = p.body_outputs();
            }
            Ok(p) => {
                sig.push_str(&format!(" plan{i} ok"));
                let _ = p.body_outputs();
            }
            Err(e) => sig.push_str(&format!(" plan{i}: {}", kind_of(&e.to_string()))),
        }
    }
    if h & 64 == 0 {
        if let Err(e) = a.plan(&a.input_target(), kind, true) {
            sig.push_str(&format!(" input: {}", kind_of(&e.to_string())));
        }
    }
    sig
}

trait LossyTokens {
    fn from_str_lossy(s: &str) -> Self;
}

impl LossyTokens for TokenSpec {
    fn from_str_lossy(s: &str) -> Self {
        s.parse().expect("a valid token spec")
    }
}

/// Model card TOML, then what the loader and preprocessing do with a valid card.
fn run_card(bytes: &[u8], world: &World) -> String {
    let text = String::from_utf8_lossy(bytes);
    let path = Path::new("fuzz/card.toml");
    let card = match ModelCard::parse(&text, path, CardSource::Sidecar(path.to_owned())) {
        Ok(c) => c,
        Err(e) => return format!("parse: {}", kind_of(&e.to_string())),
    };
    let h = fnv(bytes);
    let i = &card.input;
    for dims in [
        vec![1, 3, i64::from(i.height), i64::from(i.width)],
        vec![-1, i64::from(i.height), i64::from(i.width), 3],
        vec![1, 3, -1, -1],
        vec![1, 3],
        vec![(h % 7) as i64 - 3; 4],
    ] {
        let _ = card.check_input(path, card.input.name.as_deref().unwrap_or("x"), &dims);
    }
    for (w, hh) in [(1, 1), (7, 3), (3, 7), (640, 480), (1, 10_000), (u32::MAX, 1)] {
        let (l, t, cw, ch) = camscope::imaging::crop_box(w, hh, i);
        assert!(l + cw <= w && t + ch <= hh, "crop box ({l}, {t}, {cw}, {ch}) outside {w}x{hh}");
    }
    let mut sig = format!("ok {:?} {:?}", i.layout, card.output.kind);
    if u64::from(i.width) * u64::from(i.height) <= 256 * 256 {
        let img = image::RgbImage::from_fn(5 + (h % 9) as u32, 3 + (h % 5) as u32, |x, y| {
            image::Rgb([(x * 40) as u8, (y * 60) as u8, (h as u8).wrapping_add(x as u8)])
        });
        let view = camscope::imaging::model_view(&img, i);
        let x = camscope::imaging::normalize(&view, i);
        sig.push_str(if x.iter().all(|v| v.is_finite()) { " finite" } else { " non-finite" });
    }
    if let Some(l) = card.layer.as_ref().and_then(|l| l.tokens) {
        sig.push_str(&format!(" tokens {}", l.grid.is_some()));
    }
    let _ = world;
    sig
}

/// Labels text, then lookups the CLI, the CSV truth reader and the TUI search make.
fn run_labels(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let labels = match Labels::parse(&text, Path::new("labels.txt")) {
        Ok(l) => l,
        Err(e) => return format!("parse: {}", kind_of(&e.to_string())),
    };
    let h = fnv(bytes) as usize;
    let n = labels.len();
    let lines: Vec<&str> = text.lines().collect();
    let line = lines.get(h % lines.len().max(1)).copied().unwrap_or("");
    let chars: Vec<char> = line.chars().collect();
    let (a, b) = (h % (chars.len() + 1), (h >> 8) % (chars.len() + 1));
    let part: String = chars[a.min(b)..a.max(b)].iter().collect();
    let word = line.split(',').next().unwrap_or("").trim().to_owned();
    let odd = ["-1", "99999999999999999999999", " ", ""][(h >> 16) % 4];
    let queries = [line.to_owned(), part, word, (h % (n + 2)).to_string(), odd.to_owned()];
    let mut sig = format!("ok {}", n.min(3));
    for q in &queries {
        match labels.lookup(q) {
            Ok(i) => assert!(i < n, "lookup gave {i} of {n}"),
            Err(e) => sig.push_str(&format!(" {}", kind_of(&e.to_string()).split(' ').next().unwrap_or(""))),
        }
        if (h >> 24) % 2 == 0 {
            for i in labels.suggest(q, 3) {
                assert!(i < n);
            }
        } else {
            for hit in labels.search(q, 8) {
                assert!(hit.index < n);
            }
        }
    }
    let _ = (labels.name(h % n), labels.synonyms(h % n), labels.name(n + 1));
    sig
}

/// The cache file layout, as far as the fuzzer needs it (see `src/dataset/cache.rs`).
const CACHE_HEADER: usize = 8 + 4 + 32;

/// The triage / inspector scan cache: open a cache file holding these bytes, then use it.
fn run_cache(bytes: &[u8], world: &World) -> String {
    // The class count comes from the file when it is plausible, so that mutations reach the
    // entries; the cache checks it against the model.
    let classes = bytes
        .get(CACHE_HEADER..CACHE_HEADER + 4)
        .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize)
        .filter(|&c| (1..=4096).contains(&c))
        .unwrap_or(10);
    std::fs::write(&world.cache_file, bytes).expect("write the cache file");
    let (mut cache, outcome) =
        ScanCache::open(&world.cache_dir, &world.cache_model, &world.cache_root, classes).expect("open");
    let sig = match &outcome {
        camscope::dataset::cache::LoadOutcome::Discarded { reason } => format!("discarded: {}", kind_of(reason)),
        other => format!("{other:?}").chars().filter(|c| !c.is_ascii_digit()).collect(),
    };
    // Look up every entry the file names, with the stamp it records, as a rescan does.
    for (path, stamp) in cache_entries(bytes, classes) {
        let image = world.cache_root.join(&path);
        if let Some(scores) = cache.lookup(&image, &stamp) {
            let n = scores.num_classes();
            for c in 0..n.min(16) {
                let p = scores.probability(c);
                assert!((0.0..=1.0).contains(&p), "probability {p} of class {c}");
            }
            let r = scores.result(image.clone(), Some(classes + 3));
            let _ = (r.top.len(), r.p_truth, scores.top().len());
        }
    }
    if fnv(bytes) % 4 == 0 {
        let p = vec![1.0 / classes as f32; classes];
        cache.insert(&world.cache_root.join("new.png"), FileStamp::new(1, std::time::UNIX_EPOCH), &p);
        cache.save().expect("save the cache");
    }
    sig
}

/// The (path, stamp) of each scores record of a cache file (version 3, a log), read leniently.
fn cache_entries(bytes: &[u8], _classes: usize) -> Vec<(PathBuf, FileStamp)> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = Vec::new();
    let u32_at = |at: usize| bytes.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize);
    let Some(root_len) = u32_at(CACHE_HEADER + 8) else { return out };
    let mut at = CACHE_HEADER + 12 + root_len + 4;
    for _ in 0..64 {
        let Some(len) = u32_at(at) else { break };
        let Some(path_len) = u32_at(at + 5) else { break };
        let Some(p) = bytes.get(at + 9..at + 9 + path_len) else { break };
        if bytes.get(at + 4) == Some(&1) {
            let Some(s) = bytes.get(at + 9 + path_len..at + 9 + path_len + 20) else { break };
            let stamp = FileStamp {
                size: u64::from_le_bytes(s[..8].try_into().unwrap()),
                mtime_secs: i64::from_le_bytes(s[8..16].try_into().unwrap()),
                mtime_nanos: u32::from_le_bytes(s[16..20].try_into().unwrap()),
            };
            out.push((PathBuf::from(std::ffi::OsStr::from_bytes(p)), stamp));
        }
        at = match at.checked_add(8 + len) {
            Some(a) => a,
            None => break,
        };
    }
    out
}

/// Image decoding, then the preprocessing every command applies.
fn run_image(bytes: &[u8], world: &World) -> String {
    let path = Path::new("fuzz.img");
    let h = fnv(bytes);
    let opts = camscope::imaging::DecodeOptions {
        exif: h & 1 == 0,
        allow_truncated: h & 2 == 0,
        max_pixels: if h & 4 == 0 { camscope::imaging::DEFAULT_MAX_PIXELS } else { 1 << 16 },
        draft: (h & 8 == 0).then_some(camscope::imaging::Draft {
            width: 16,
            height: 16,
            resize: camscope::model::ResizePolicy::CenterCrop,
            crop_fraction: 1.0,
        }),
    };
    let img = match camscope::imaging::decode_image(bytes, path, &opts) {
        Ok(d) => d.rgb,
        Err(e) => return format!("decode: {}", kind_of(&e.to_string().replace("fuzz.img: ", ""))),
    };
    let sig = format!("ok {}", if img.width() > img.height() { "wide" } else { "tall" });
    if u64::from(img.width()) * u64::from(img.height()) <= 4 << 20 {
        let view = camscope::imaging::model_view(&img, &world.spec);
        let x = camscope::imaging::normalize(&view, &world.spec);
        assert_eq!(x.shape(), [3, 12, 16]);
    }
    sig
}

// ---------------------------------------------------------------------------------------
// The corpus.

struct Seeds {
    /// (name, bytes); names for messages.
    files: Vec<(String, Arc<Vec<u8>>)>,
    /// Signatures seen so far.
    seen: HashSet<String>,
    /// Mutated inputs that reached a new signature (bounded).
    grown: usize,
}

impl Seeds {
    fn pick(&self, rng: &mut Rng) -> &Arc<Vec<u8>> {
        // Favour small files: a 19 MB model is picked about as often as a 64 KB one would
        // be 300 times over.
        for _ in 0..8 {
            let (_, f) = &self.files[rng.below(self.files.len())];
            if f.len() <= 64 << 10 || rng.one_in(1 + f.len() / (16 << 10)) {
                return f;
            }
        }
        &self.files[rng.below(self.files.len())].1
    }
}

fn read_dir_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Corpus files of a target: its committed folder, files elsewhere in the checkout (the
/// bundled model, the sample photos, the cards) and its regression inputs.
fn corpus_paths(target: Target) -> Vec<PathBuf> {
    let r = root();
    let mut v = read_dir_files(&fuzz_data().join(target.name()));
    v.extend(read_dir_files(&fuzz_data().join("regressions").join(target.name())));
    let ext = |dir: &Path, e: &str| -> Vec<PathBuf> {
        read_dir_files(dir).into_iter().filter(|p| p.extension().is_some_and(|x| x == e)).collect()
    };
    match target {
        Target::Onnx => {
            v.push(r.join("models/efficientnet_lite0.onnx"));
            v.extend(ext(&r.join("tests/data/bad"), "onnx"));
        }
        Target::Card => {
            v.push(r.join("models/efficientnet_lite0.toml"));
            v.extend(ext(&r.join("tests/data/conformance"), "toml").into_iter().filter(|p| !p.ends_with("index.toml")));
            v.extend(ext(&r.join("tests/data/bad"), "toml"));
        }
        Target::Labels => v.push(r.join("models/imagenet_labels.txt")),
        Target::Cache => {}
        Target::Image => {
            for d in read_dir_files(&r.join("samples")).into_iter().chain(
                std::fs::read_dir(r.join("samples"))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .flat_map(|e| read_dir_files(&e.path())),
            ) {
                if camscope::imaging::has_image_extension(&d) {
                    v.push(d);
                }
            }
            v.extend(["empty.jpg", "notes.png", "truncated.png"].iter().map(|f| r.join("tests/data/bad").join(f)));
        }
    }
    v.retain(|p| p.is_file());
    v
}

/// Cache files made by the cache itself for this run's root (the file records the root's
/// path, so committed files are rebased onto it), plus the committed ones rebased.
fn cache_seeds(world: &World) -> Vec<(String, Arc<Vec<u8>>)> {
    let mut out = Vec::new();
    for (classes, entries) in [(1usize, 1usize), (3, 4), (10, 2), (1000, 1), (5, 0), (2, 3)] {
        let (mut c, _) = ScanCache::open(&world.cache_dir, &world.cache_model, &world.cache_root, classes).unwrap();
        for e in 0..entries {
            let mut p: Vec<f32> = (0..classes).map(|k| ((k * 7 + e * 3) % 11) as f32 + 0.01).collect();
            let sum: f32 = p.iter().sum();
            p.iter_mut().for_each(|v| *v /= sum);
            let name = ["a.png", "dir/b.jpg", "ü ñ.webp", "c.PNG"][e % 4];
            c.insert(&world.cache_root.join(name), FileStamp::new(e as u64 * 1000, std::time::UNIX_EPOCH), &p);
        }
        if entries == 0 {
            // An empty cache is written once something was dropped from it.
            c.insert(&world.cache_root.join("gone.png"), FileStamp::new(0, std::time::UNIX_EPOCH), &vec![0.5; classes]);
            c.retain(|_| false);
        }
        c.save().unwrap();
        let bytes = std::fs::read(c.file()).unwrap();
        let _ = std::fs::remove_file(c.file());
        out.push((format!("generated-{classes}-{entries}"), Arc::new(bytes)));
    }
    for p in corpus_paths(Target::Cache) {
        let bytes = std::fs::read(&p).unwrap();
        out.push((p.display().to_string(), Arc::new(rebase_cache(&bytes, world))));
    }
    out
}

/// A cache file with its model hash and root replaced by this run's, checksum fixed.
fn rebase_cache(bytes: &[u8], world: &World) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let root_at = CACHE_HEADER + 8;
    let Some(len) = bytes.get(root_at..root_at + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize) else {
        return bytes.to_vec();
    };
    if bytes.len() < root_at + 4 + len + 4 {
        return bytes.to_vec();
    }
    let root = world.cache_root.canonicalize().unwrap();
    let mut out = bytes[..root_at].to_vec();
    out[12..44].copy_from_slice(&world.cache_model.0);
    out.extend_from_slice(&(root.as_os_str().len() as u32).to_le_bytes());
    out.extend_from_slice(root.as_os_str().as_bytes());
    out.extend_from_slice(&bytes[root_at + 4 + len..]);
    fix_cache_crcs(&mut out);
    out
}

/// Recompute the CRC-32 of the header and of every record a version-3 cache file holds, so
/// that mutations reach the parsing of values instead of stopping at a checksum.
fn fix_cache_crcs(data: &mut [u8]) {
    let u32_at = |d: &[u8], at: usize| d.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize);
    let Some(root_len) = u32_at(data, CACHE_HEADER + 8) else { return };
    let Some(header_end) = (CACHE_HEADER + 12).checked_add(root_len).filter(|e| e + 4 <= data.len()) else { return };
    let crc = crc32fast::hash(&data[..header_end]);
    data[header_end..header_end + 4].copy_from_slice(&crc.to_le_bytes());
    let mut at = header_end + 4;
    while let Some(len) = u32_at(data, at) {
        let Some(end) = (at + 4).checked_add(len).filter(|e| e + 4 <= data.len()) else { return };
        let crc = crc32fast::hash(&data[at..end]);
        data[end..end + 4].copy_from_slice(&crc.to_le_bytes());
        at = end + 4;
    }
}

fn load_seeds(target: Target, world: &World) -> Seeds {
    let files = match target {
        Target::Cache => cache_seeds(world),
        _ => corpus_paths(target)
            .into_iter()
            .map(|p| {
                let name = p.strip_prefix(root()).unwrap_or(&p).display().to_string();
                (name, Arc::new(std::fs::read(&p).unwrap()))
            })
            .collect(),
    };
    assert!(!files.is_empty(), "no corpus for {}", target.name());
    Seeds { files, seen: HashSet::new(), grown: 0 }
}

// ---------------------------------------------------------------------------------------
// Mutations.

const INTERESTING_8: [u8; 12] = [0, 1, 2, 0x7f, 0x80, 0xff, 0xfe, b'0', b'-', b'\n', b',', b'"'];
const INTERESTING_64: [i64; 14] = [
    0,
    1,
    -1,
    2,
    255,
    256,
    65535,
    65536,
    i32::MAX as i64,
    i32::MIN as i64,
    u32::MAX as i64,
    i64::MAX,
    i64::MIN,
    1 << 40,
];

fn mutate(target: Target, rng: &mut Rng, data: &mut Vec<u8>, seeds: &Seeds) {
    let most = if rng.one_in(4) { 8 } else { 3 };
    let stack = 1 + rng.below(most);
    let big = data.len() > (1 << 20);
    for _ in 0..stack {
        let structured = rng.below(3) == 0 && !big;
        if structured && mutate_structured(target, rng, data, seeds) {
            continue;
        }
        mutate_bytes(rng, data, seeds);
    }
    if target == Target::Cache && !rng.one_in(5) {
        fix_cache_crcs(data);
    }
    if target == Target::Image && data.starts_with(b"\x89PNG") && !rng.one_in(4) {
        fix_png_crcs(data);
    }
    data.truncate(target.max_len().max(if big { data.len() } else { 0 }));
}

fn mutate_bytes(rng: &mut Rng, data: &mut Vec<u8>, seeds: &Seeds) {
    let len = data.len();
    let pos = rng.below(len + 1);
    let chunk = |rng: &mut Rng, max: usize| {
        let cap = if rng.one_in(8) { 4096 } else { 32 };
        1 + rng.below(max.clamp(1, cap))
    };
    match rng.below(11) {
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            data[i] = *rng.pick(&INTERESTING_8);
        }
        2 if len > 0 => {
            let i = rng.below(len);
            let w = *rng.pick(&[2usize, 4, 8]);
            let v = rng.pick(&INTERESTING_64).to_le_bytes();
            let be = rng.one_in(2);
            for k in 0..w.min(len - i) {
                data[i + k] = if be { v[w - 1 - k] } else { v[k] };
            }
        }
        3 if len > 0 => {
            let i = rng.below(len);
            let d = 1 + rng.below(16) as u8;
            data[i] = if rng.one_in(2) { data[i].wrapping_add(d) } else { data[i].wrapping_sub(d) };
        }
        4 => {
            let n = chunk(rng, 64);
            let fill: Vec<u8> = if rng.one_in(2) {
                (0..n).map(|_| rng.next() as u8).collect()
            } else {
                vec![*rng.pick(&INTERESTING_8); n]
            };
            data.splice(pos..pos, fill);
        }
        5 if len > 0 => {
            let n = chunk(rng, len / 4 + 1).min(len - pos.min(len - 1));
            let at = pos.min(len - 1);
            data.drain(at..at + n);
        }
        6 if len > 0 => {
            let at = rng.below(len);
            let n = chunk(rng, len - at).min(len - at);
            let copy = data[at..at + n].to_vec();
            data.splice(pos..pos, copy);
        }
        7 | 8 => {
            let other = seeds.pick(rng);
            if other.is_empty() {
                return;
            }
            let at = rng.below(other.len());
            let n = chunk(rng, other.len() - at).min(other.len() - at);
            if rng.one_in(2) {
                data.splice(pos..pos, other[at..at + n].iter().copied());
            } else {
                let end = (pos + n).min(len);
                data.splice(pos..end, other[at..at + n].iter().copied());
            }
        }
        9 => {
            let other = seeds.pick(rng);
            let at = rng.below(other.len() + 1);
            data.truncate(pos);
            data.extend_from_slice(&other[at..]);
        }
        _ => data.truncate(pos),
    }
}

fn mutate_structured(target: Target, rng: &mut Rng, data: &mut Vec<u8>, seeds: &Seeds) -> bool {
    match target {
        Target::Onnx => mutate_protobuf(rng, data),
        Target::Card => mutate_toml(rng, data, seeds),
        Target::Labels => mutate_lines(rng, data, seeds, LABEL_WORDS),
        Target::Cache => mutate_cache(rng, data),
        Target::Image => false,
    }
}

// Protobuf as a tree of fields.

#[derive(Clone)]
enum Pb {
    Varint(u64),
    Fixed64([u8; 8]),
    Fixed32([u8; 4]),
    /// Length-delimited: raw bytes, and the fields when they parse as a message.
    Len(Vec<u8>, Option<Vec<Field>>),
}

#[derive(Clone)]
struct Field {
    num: u64,
    val: Pb,
}

fn read_varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn parse_pb(b: &[u8], depth: usize) -> Option<Vec<Field>> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < b.len() {
        let key = read_varint(b, &mut at)?;
        let (num, wt) = (key >> 3, key & 7);
        if num == 0 {
            return None;
        }
        let val = match wt {
            0 => Pb::Varint(read_varint(b, &mut at)?),
            1 => Pb::Fixed64(b.get(at..at + 8)?.try_into().ok().inspect(|_| at += 8)?),
            5 => Pb::Fixed32(b.get(at..at + 4)?.try_into().ok().inspect(|_| at += 4)?),
            2 => {
                let n = usize::try_from(read_varint(b, &mut at)?).ok()?;
                let body = b.get(at..at.checked_add(n)?)?.to_vec();
                at += n;
                let inner = if depth < 12 && !body.is_empty() && body.len() < (256 << 10) {
                    parse_pb(&body, depth + 1)
                } else {
                    None
                };
                Pb::Len(body, inner)
            }
            _ => return None,
        };
        out.push(Field { num, val });
    }
    Some(out)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn encode_pb(fields: &[Field], out: &mut Vec<u8>) {
    for f in fields {
        let wt = match f.val {
            Pb::Varint(_) => 0,
            Pb::Fixed64(_) => 1,
            Pb::Fixed32(_) => 5,
            Pb::Len(..) => 2,
        };
        put_varint(out, f.num << 3 | wt);
        match &f.val {
            Pb::Varint(v) => put_varint(out, *v),
            Pb::Fixed64(b) => out.extend_from_slice(b),
            Pb::Fixed32(b) => out.extend_from_slice(b),
            Pb::Len(raw, inner) => {
                let body = match inner {
                    Some(fs) => {
                        let mut v = Vec::new();
                        encode_pb(fs, &mut v);
                        v
                    }
                    None => raw.clone(),
                };
                put_varint(out, body.len() as u64);
                out.extend_from_slice(&body);
            }
        }
    }
}

/// Short length-delimited leaves (names, mostly), to rename tensors to one another.
fn strings(fields: &[Field], out: &mut Vec<Vec<u8>>) {
    for f in fields {
        if let Pb::Len(raw, inner) = &f.val {
            if raw.len() <= 64 && raw.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
                out.push(raw.clone());
            }
            if let Some(fs) = inner {
                strings(fs, out);
            }
        }
    }
}

fn mutate_protobuf(rng: &mut Rng, data: &mut Vec<u8>) -> bool {
    let Some(mut tree) = parse_pb(data, 0) else { return false };
    let mut names = Vec::new();
    strings(&tree, &mut names);
    // Walk down to a random message.
    let mut msg: &mut Vec<Field> = &mut tree;
    for _ in 0..8 {
        let subs: Vec<usize> = (0..msg.len()).filter(|&i| matches!(msg[i].val, Pb::Len(_, Some(_)))).collect();
        if subs.is_empty() || rng.one_in(4) {
            break;
        }
        let i = *rng.pick(&subs);
        let Pb::Len(_, Some(inner)) = &mut msg[i].val else { unreachable!() };
        msg = inner;
    }
    if msg.is_empty() {
        return false;
    }
    let i = rng.below(msg.len());
    match rng.below(7) {
        0 => {
            msg.remove(i);
        }
        1 => {
            let f = msg[i].clone();
            msg.insert(rng.below(msg.len() + 1), f);
        }
        2 => {
            let j = rng.below(msg.len());
            msg.swap(i, j);
        }
        3 | 4 if !names.is_empty() => {
            // Rename: a name (tensor, node, op type, attribute) becomes another one.
            let leaves: Vec<usize> =
                (0..msg.len()).filter(|&k| matches!(&msg[k].val, Pb::Len(r, _) if r.len() <= 64)).collect();
            let Some(&k) = leaves.get(rng.below(leaves.len().max(1))) else { return false };
            msg[k].val = Pb::Len(rng.pick(&names).clone(), None);
        }
        _ => {
            let ints: Vec<usize> = (0..msg.len()).filter(|&k| matches!(msg[k].val, Pb::Varint(_))).collect();
            let Some(&k) = ints.get(rng.below(ints.len().max(1))) else { return false };
            let Pb::Varint(v) = msg[k].val else { unreachable!() };
            msg[k].val = Pb::Varint(match rng.below(4) {
                0 => v.wrapping_add(1),
                1 => v.wrapping_sub(1),
                2 => v.wrapping_mul(2),
                _ => *rng.pick(&INTERESTING_64) as u64,
            });
        }
    }
    data.clear();
    encode_pb(&tree, data);
    true
}

const TOML_VALUES: &[&str] = &[
    "0",
    "-1",
    "1",
    "3",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "1e309",
    "nan",
    "inf",
    "-inf",
    "0.0",
    "-0.0",
    "5e-324",
    "\"\"",
    "\"x\"",
    "[]",
    "[0, 0, 0]",
    "[1e308, -1e308, nan]",
    "[0.5, 0.5]",
    "{}",
    "true",
    "\"nhwc\"",
    "\"nchw\"",
    "\"stretch\"",
    "\"center-crop\"",
    "\"nearest\"",
    "\"bicubic\"",
    "\"lanczos\"",
    "\"sigmoid\"",
    "\"probabilities\"",
    "\"logits\"",
    "\"0\"",
    "\"0+0x0\"",
    "\"1+14x14\"",
    "\"18446744073709551615+1x1\"",
    "\"4294967296x4294967296\"",
    "\"1+\"",
    "\"x\"",
    "\"İ\"",
];

const TOML_LINES: &[&str] = &[
    "[layer]",
    "tokens = \"1+14x14\"",
    "[output]",
    "kind = \"sigmoid\"",
    "name = \"logits\"",
    "labels = \"labels.txt\"",
    "crop_fraction = 1e-300",
    "pixel_scale = 1e308",
    "height = 8192",
    "width = 1",
    "resize = \"stretch\"",
    "[input]",
    "[[input]]",
    "mean = [0, 0, 0]",
    "std = [1e-308, 1, 1]",
    "name = \"\"",
];

const LABEL_WORDS: &[&str] = &[
    "tabby, tabby cat",
    "İstanbul",
    "ß",
    "ﬁ",
    "e\u{301}",
    "\u{0}",
    "\u{202e}cat",
    "🐈",
    "Σ",
    " , ",
    ",",
    "class 0",
    "0",
    "-",
    "_",
    "a-b_c d",
    "\r",
    "\t",
];

fn mutate_toml(rng: &mut Rng, data: &mut Vec<u8>, seeds: &Seeds) -> bool {
    if rng.one_in(2) {
        return mutate_lines(rng, data, seeds, TOML_LINES);
    }
    // Replace a value (after `=`, or an array element) with an interesting one.
    let text = String::from_utf8_lossy(data).into_owned();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let with_eq: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].contains('=')).collect();
    let Some(&i) = with_eq.get(rng.below(with_eq.len().max(1))) else { return false };
    let key = lines[i].split('=').next().unwrap_or("").to_owned();
    lines[i] = format!("{key}= {}", rng.pick(TOML_VALUES));
    *data = lines.join("\n").into_bytes();
    true
}

fn mutate_lines(rng: &mut Rng, data: &mut Vec<u8>, seeds: &Seeds, words: &[&str]) -> bool {
    let text = String::from_utf8_lossy(data).into_owned();
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    let n = lines.len();
    let i = rng.below(n);
    match rng.below(6) {
        0 if n > 1 => {
            lines.remove(i);
        }
        1 => {
            let l = lines[i].clone();
            lines.insert(rng.below(n + 1), l);
        }
        2 => {
            let j = rng.below(n);
            lines.swap(i, j);
        }
        3 => {
            let other = String::from_utf8_lossy(seeds.pick(rng)).into_owned();
            let ls: Vec<&str> = other.lines().collect();
            if let Some(l) = ls.get(rng.below(ls.len().max(1))) {
                lines.insert(rng.below(n + 1), (*l).to_owned());
            }
        }
        4 => {
            // Insert a word at a character boundary of a line.
            let chars: Vec<char> = lines[i].chars().collect();
            let at = rng.below(chars.len() + 1);
            let mut s: String = chars[..at].iter().collect();
            let word = words[rng.below(words.len())];
            s.push_str(word);
            s.extend(&chars[at..]);
            lines[i] = s;
        }
        _ => lines.insert(rng.below(n + 1), (*rng.pick(words)).to_owned()),
    }
    *data = lines.join("\n").into_bytes();
    true
}

/// Set one header or entry field of a cache file to an interesting value.
fn mutate_cache(rng: &mut Rng, data: &mut [u8]) -> bool {
    if data.len() < CACHE_HEADER + 16 {
        return false;
    }
    let fields = [8usize, CACHE_HEADER, CACHE_HEADER + 4, CACHE_HEADER + 8];
    let at = if rng.one_in(2) { *rng.pick(&fields) } else { rng.below(data.len() - 4) & !3 };
    let v = *rng.pick(&INTERESTING_64) as u32;
    data[at..at + 4].copy_from_slice(&v.to_le_bytes());
    true
}

/// PNG chunks' CRCs recomputed, so mutations reach the decoder beyond the checksum.
fn fix_png_crcs(data: &mut [u8]) {
    let mut at = 8;
    while at + 12 <= data.len() {
        let len = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        let Some(end) = at.checked_add(8 + len).filter(|&e| e + 4 <= data.len()) else { break };
        let crc = crc32(&data[at + 4..end]);
        data[end..end + 4].copy_from_slice(&crc.to_be_bytes());
        at = end + 4;
    }
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 == 1 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

// ---------------------------------------------------------------------------------------
// Running cases: a worker thread per target run, a watchdog, a report.

/// A case slower than this is a hang.
fn case_limit() -> Duration {
    let ms = std::env::var("FUZZ_CASE_LIMIT_MS").ok().and_then(|v| v.parse().ok());
    Duration::from_millis(ms.unwrap_or(if cfg!(debug_assertions) { 20_000 } else { 5_000 }))
}

type Case = (Target, Arc<Vec<u8>>);
type Outcome = Result<String, String>;

struct Worker {
    send: mpsc::Sender<Case>,
    recv: mpsc::Receiver<Outcome>,
}

fn spawn_worker(world: Arc<World>) -> Worker {
    let (send, cases) = mpsc::channel::<Case>();
    let (done, recv) = mpsc::channel::<Outcome>();
    std::thread::Builder::new()
        .name("fuzz-worker".into())
        .stack_size(64 << 20)
        .spawn(move || {
            for (target, bytes) in cases {
                *CURRENT.lock().unwrap() = Some((target.name(), bytes.clone()));
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(target, &bytes, &world)));
                *CURRENT.lock().unwrap() = None;
                let out = r.map_err(|p| {
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default();
                    let at = LAST_PANIC.with(|l| l.borrow_mut().take()).unwrap_or_default();
                    format!("{msg} at {at}")
                });
                if done.send(out).is_err() {
                    break;
                }
            }
        })
        .expect("spawn the fuzz worker");
    Worker { send, recv }
}

thread_local! {
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Panics inside cases are expected findings: record where, print nothing.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some("fuzz-worker") {
                let at = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
                LAST_PANIC.with(|l| *l.borrow_mut() = Some(at));
            } else {
                default(info);
            }
        }));
    });
}

#[derive(Default, Clone)]
struct Stats {
    execs: u64,
    time: Duration,
    slowest: Duration,
    panics: Vec<String>,
    hangs: Vec<String>,
    /// Cases that reached beyond the first error (the parser accepted them).
    accepted: u64,
}

struct Report {
    per: Vec<(Target, Stats)>,
    wall: Duration,
    grown: usize,
}

impl Report {
    fn total(&self) -> Stats {
        let mut t = Stats::default();
        for (_, s) in &self.per {
            t.execs += s.execs;
            t.time += s.time;
            t.slowest = t.slowest.max(s.slowest);
            t.panics.extend(s.panics.iter().cloned());
            t.hangs.extend(s.hangs.iter().cloned());
            t.accepted += s.accepted;
        }
        t
    }

    fn print(&self, label: &str) {
        println!("fuzz {label}: target   execs    execs/s  accepted  slowest  panics hangs");
        for (t, s) in &self.per {
            println!(
                "fuzz {label}: {:<7} {:>8} {:>9.0} {:>8.1}% {:>7.1}ms {:>6} {:>5}",
                t.name(),
                s.execs,
                s.execs as f64 / s.time.as_secs_f64().max(1e-9),
                100.0 * s.accepted as f64 / s.execs.max(1) as f64,
                s.slowest.as_secs_f64() * 1e3,
                s.panics.len(),
                s.hangs.len()
            );
        }
        let t = self.total();
        println!(
            "fuzz {label}: total {} executions in {:.1} s ({:.0}/s), {} panics, {} hangs, {} refused allocations over {} MiB, corpus grew by {}, peak heap {:.0} MiB, peak RSS {:.0} MiB",
            t.execs,
            self.wall.as_secs_f64(),
            t.execs as f64 / self.wall.as_secs_f64().max(1e-9),
            t.panics.len(),
            t.hangs.len(),
            REFUSED.load(Ordering::Relaxed),
            MAX_ALLOC >> 20,
            self.grown,
            PEAK.load(Ordering::Relaxed) as f64 / (1 << 20) as f64,
            peak_rss().unwrap_or(0) as f64 / (1 << 20) as f64,
        );
        for p in t.panics.iter().chain(&t.hangs).take(20) {
            println!("fuzz {label}: {p}");
        }
    }
}

/// Replay every corpus file, then run `execs` mutated cases from `seed`.
fn fuzz(seed: u64, execs: u64, deadline: Option<Duration>, progress: bool) -> Report {
    quiet_panics();
    let world = Arc::new(World::new());
    let mut seeds: HashMap<Target, Seeds> = TARGETS.iter().map(|&t| (t, load_seeds(t, &world))).collect();
    let mut stats: HashMap<Target, Stats> = HashMap::new();
    let mut worker = spawn_worker(world.clone());
    let mut rng = Rng(seed);
    let limit = case_limit();
    let start = Instant::now();
    let mut last_note = Instant::now();
    let replay: Vec<Case> =
        TARGETS.iter().flat_map(|&t| seeds[&t].files.iter().map(move |(_, f)| (t, f.clone()))).collect();
    let total_weight: usize = TARGETS.iter().map(|t| t.weight()).sum();
    let mut n = 0u64;
    let mut replaying = replay.into_iter();
    loop {
        let (target, bytes, mutated) = match replaying.next() {
            Some((t, b)) => (t, b, false),
            None => {
                if n >= execs || deadline.is_some_and(|d| start.elapsed() >= d) {
                    break;
                }
                n += 1;
                let mut w = rng.below(total_weight);
                let t = *TARGETS
                    .iter()
                    .find(|t| {
                        if w < t.weight() {
                            return true;
                        }
                        w -= t.weight();
                        false
                    })
                    .unwrap();
                let s = &seeds[&t];
                let mut data = s.pick(&mut rng).to_vec();
                mutate(t, &mut rng, &mut data, s);
                (t, Arc::new(data), true)
            }
        };
        let t0 = Instant::now();
        worker.send.send((target, bytes.clone())).expect("worker alive");
        let outcome = worker.recv.recv_timeout(limit);
        let took = t0.elapsed();
        let s = stats.entry(target).or_default();
        s.execs += 1;
        s.time += took;
        s.slowest = s.slowest.max(took);
        match outcome {
            Ok(Ok(sig)) => {
                let refused = ["decode:", "parse:", "discarded:", "analysis:", "no "];
                if !refused.iter().any(|r| sig.starts_with(r)) {
                    s.accepted += 1;
                }
                let sd = seeds.get_mut(&target).unwrap();
                if mutated && sd.seen.len() < 5000 && sd.seen.insert(sig.clone()) && sd.grown < 2000 {
                    sd.grown += 1;
                    sd.files.push((format!("grown: {sig}"), bytes.clone()));
                } else if !mutated {
                    sd.seen.insert(sig);
                }
            }
            Ok(Err(panic)) => {
                let path = save_finding("panic", target.name(), &bytes);
                s.panics.push(format!("{} panic: {panic}; input {}", target.name(), path.display()));
            }
            Err(_) => {
                let path = save_finding("hang", target.name(), &bytes);
                s.hangs.push(format!(
                    "{} hang: no result after {:.1} s; input {}",
                    target.name(),
                    limit.as_secs_f64(),
                    path.display()
                ));
                // The stuck worker cannot be stopped; leave it and start another.
                worker = spawn_worker(world.clone());
                if stats.values().map(|s| s.hangs.len()).sum::<usize>() >= 5 {
                    break;
                }
            }
        }
        if progress && last_note.elapsed() >= Duration::from_secs(30) {
            last_note = Instant::now();
            let done: u64 = stats.values().map(|s| s.execs).sum();
            eprintln!(
                "fuzz: {done} executions, {:.0}/s, {} panics, {} hangs, peak RSS {} MiB",
                done as f64 / start.elapsed().as_secs_f64(),
                stats.values().map(|s| s.panics.len()).sum::<usize>(),
                stats.values().map(|s| s.hangs.len()).sum::<usize>(),
                peak_rss().unwrap_or(0) >> 20
            );
        }
    }
    let grown = seeds.values().map(|s| s.grown).sum();
    Report {
        per: TARGETS.iter().map(|t| (*t, stats.get(t).cloned().unwrap_or_default())).collect(),
        wall: start.elapsed(),
        grown,
    }
}

fn check(report: &Report) {
    let t = report.total();
    assert!(
        t.panics.is_empty() && t.hangs.is_empty() && REFUSED.load(Ordering::Relaxed) == 0,
        "fuzzing found {} panics and {} hangs (inputs saved under {}):\n{}",
        t.panics.len(),
        t.hangs.len(),
        findings_dir().display(),
        t.panics.iter().chain(&t.hangs).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// The CI run: the committed corpus and regressions replayed, then [`CI_EXECS`] mutated
/// cases from a fixed seed (`FUZZ_EXECS` and `FUZZ_SEED` override).
#[test]
fn fuzz_ci() {
    let execs = std::env::var("FUZZ_EXECS").ok().and_then(|v| v.parse().ok()).unwrap_or(CI_EXECS);
    let seed = std::env::var("FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(CI_SEED);
    let report = fuzz(seed, execs, None, false);
    report.print("ci");
    check(&report);
    assert!(report.total().execs >= execs);
}

/// The soak: `FUZZ_EXECS` (default 1,000,000) cases, `FUZZ_SEED` (default: the clock),
/// optionally stopped after `FUZZ_SECONDS`. Run it with `scripts/fuzz-soak`.
#[test]
#[ignore = "long: run with scripts/fuzz-soak"]
fn fuzz_soak() {
    let execs = std::env::var("FUZZ_EXECS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let seed = std::env::var("FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    let deadline = std::env::var("FUZZ_SECONDS").ok().and_then(|v| v.parse().ok()).map(Duration::from_secs);
    println!("fuzz soak: seed {seed}, {execs} executions");
    let report = fuzz(seed, execs, deadline, true);
    report.print("soak");
    check(&report);
}

/// Replay one saved input: `FUZZ_TARGET=onnx FUZZ_INPUT=path cargo test --test fuzz -- --ignored replay`.
#[test]
#[ignore = "manual: replays FUZZ_INPUT"]
fn replay() {
    let target = std::env::var("FUZZ_TARGET").expect("FUZZ_TARGET");
    let target = *TARGETS.iter().find(|t| t.name() == target).expect("a target name");
    let bytes = std::fs::read(std::env::var("FUZZ_INPUT").expect("FUZZ_INPUT")).unwrap();
    let world = World::new();
    let bytes = if target == Target::Cache { rebase_cache(&bytes, &world) } else { bytes };
    println!("{}", run(target, &bytes, &world));
}

// ---------------------------------------------------------------------------------------
// The committed corpus.

/// Rebuild `tests/data/fuzz/` (ONNX Runtime needed): every conformance model and the
/// bundled one with its weights dropped and every tensor's measured shape declared, tiny
/// models of each operator family, small images in every format camscope reads, labels
/// and a cache file.
#[test]
#[ignore = "rebuilds the committed corpus; needs ONNX Runtime"]
fn generate_corpus() {
    if std::env::var_os("CAMSCOPE_FUZZ_GENERATE").is_none() {
        return;
    }
    corpus::generate();
}

mod corpus {
    use super::*;
    use camscope::engine::{LoadedModel, probe_shapes};
    use camscope::onnx::proto::StringStringEntryProto;
    use camscope::onnx::shapes::Dim;
    use camscope::onnx::{ModelProto, attrs, dtype, tensors, value_info};
    use common::onnx_build::{Tiny, cpu};

    pub fn generate() {
        let out = fuzz_data();
        for d in ["onnx", "image", "labels", "cache", "card"] {
            std::fs::create_dir_all(out.join(d)).unwrap();
        }
        let conf = root().join("tests/data/conformance");
        let mut models: Vec<PathBuf> =
            read_dir_files(&conf).into_iter().filter(|p| p.extension().is_some_and(|e| e == "onnx")).collect();
        models.push(root().join("models/efficientnet_lite0.onnx"));
        for m in models {
            let card = m.with_extension("toml");
            let loaded = LoadedModel::open(&m, card.is_file().then_some(card.as_path()), &cpu())
                .unwrap_or_else(|e| panic!("{}: {e}", m.display()));
            let name = m.file_stem().unwrap().to_string_lossy().into_owned();
            let card_text = card.is_file().then(|| std::fs::read_to_string(&card).unwrap());
            write_model(&loaded.analysis, &out.join("onnx").join(format!("{name}.onnx")), card_text);
        }
        for (name, t, dims) in tiny_models() {
            let mut a = Analysis::new(t.build(), "x", "y", MapLayout::Nchw).unwrap();
            let d = dims.clone();
            let at = move |n: usize| {
                let mut v = d.clone();
                v[0] = n;
                v
            };
            probe_shapes(&mut a, "x", &at, Path::new("tiny.onnx"), false, None, None).unwrap();
            write_model(&a, &out.join("onnx").join(format!("tiny_{name}.onnx")), None);
        }
        images(&out.join("image"));
        std::fs::write(out.join("labels/small.txt"), "tabby, tabby cat\ntiger cat\nEgyptian cat\nwall clock\n")
            .unwrap();
        std::fs::write(out.join("labels/binary.txt"), "hot dog\n").unwrap();
        std::fs::write(
            out.join("card/vit_tokens.toml"),
            "name = \"ViT\"\nlabels = \"labels.txt\"\n\n[input]\nname = \"pixel_values\"\nlayout = \"NHWC\"\nheight = 224\nwidth = 192\nresize = \"stretch\"\ninterpolation = \"nearest\"\ncrop_fraction = 0.875\npixel_scale = 0.00392156862745098\nmean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\n\n[output]\nname = \"logits\"\nkind = \"sigmoid\"\n\n[layer]\ntokens = \"1+14x12\"\n",
        )
        .unwrap();
        let world = World::new();
        let (mut c, _) = ScanCache::open(&world.cache_dir, &world.cache_model, &world.cache_root, 4).unwrap();
        c.insert(&world.cache_root.join("cat/a.png"), FileStamp::new(10, std::time::UNIX_EPOCH), &[0.7, 0.1, 0.1, 0.1]);
        c.insert(&world.cache_root.join("dog/b.jpg"), FileStamp::new(20, std::time::UNIX_EPOCH), &[0.0, 0.5, 0.5, 0.0]);
        c.save().unwrap();
        std::fs::copy(c.file(), out.join("cache/four_classes.bin")).unwrap();
    }

    /// The model with float weights over 64 values emptied (no analysis reads them) and the
    /// measured shape of every tensor declared, plus the probe's integer constants and the
    /// card as metadata.
    fn write_model(a: &Analysis, path: &Path, card: Option<String>) {
        let mut m: ModelProto = a.model().clone();
        let facts = a.facts();
        let ints: HashMap<String, Vec<i64>> = a
            .computed_constants()
            .into_iter()
            .filter_map(|c| a.constants().ints(&c).filter(|v| v.len() <= 64).map(|v| (c, v)))
            .collect();
        let g = m.graph.as_mut().unwrap();
        for t in g.initializer.iter_mut() {
            let n: i64 = t.dims.iter().product();
            if t.data_type == Some(dtype::FLOAT) && n > 64 {
                t.raw_data = Some(Default::default());
                t.float_data.clear();
            }
        }
        for n in g.node.iter_mut() {
            for t in n.attribute.iter_mut().filter_map(|a| a.t.as_mut()) {
                let k: i64 = t.dims.iter().product();
                if t.data_type == Some(dtype::FLOAT) && k > 64 {
                    t.raw_data = Some(Default::default());
                    t.float_data.clear();
                }
            }
        }
        let declared: HashSet<String> = g.input.iter().chain(&g.output).filter_map(|v| v.name.clone()).collect();
        g.value_info.clear();
        let outputs: Vec<String> = g.node.iter().flat_map(|n| n.output.clone()).collect();
        for o in outputs.iter().filter(|o| !o.is_empty() && !declared.contains(*o)) {
            if let Some(f) = facts.get(o) {
                let dims: Vec<i64> = f.dims.iter().map(|d| d.fixed().unwrap_or(-1)).collect();
                let names: Vec<Option<&str>> = f
                    .dims
                    .iter()
                    .map(|d| match d {
                        Dim::Batch => Some("N"),
                        Dim::Unknown => Some("?"),
                        Dim::Fixed(_) => None,
                    })
                    .collect();
                g.value_info.push(value_info(o, f.elem_type, &dims, &names));
            }
        }
        m.metadata_props.retain(|p| !p.key.as_deref().is_some_and(|k| k.starts_with("camscope.")));
        let mut meta = |k: &str, v: String| {
            m.metadata_props.push(StringStringEntryProto { key: Some(k.into()), value: Some(v) });
        };
        if !ints.is_empty() {
            meta("camscope.fuzz.ints", serde_json::to_string(&ints).unwrap());
        }
        if let Some(c) = card {
            meta("camscope.card", c);
        }
        std::fs::write(path, onnx::encode_model(&m)).unwrap();
        let _ = tensors::f32;
    }

    fn tiny_models() -> Vec<(&'static str, Tiny, Vec<usize>)> {
        let w = |n: usize| common::onnx_build::values(n, 7, 0.1);
        let cnn = Tiny::new(17)
            .input("x", &[-1, 3, 8, 8])
            .output("y", &[-1, 4])
            .init("w", &[6, 3, 3, 3], &w(162))
            .init("b", &[6], &w(6))
            .init("fc", &[6, 4], &w(24))
            .node(
                "Conv",
                &["x", "w", "b"],
                &["c"],
                vec![attrs::ints("pads", &[1, 1, 1, 1]), attrs::ints("strides", &[2, 2])],
            )
            .node("Relu", &["c"], &["r"], vec![])
            .node("MaxPool", &["r"], &["p"], vec![attrs::ints("kernel_shape", &[2, 2])])
            .node("GlobalAveragePool", &["p"], &["g"], vec![])
            .node("Flatten", &["g"], &["f"], vec![])
            .node("MatMul", &["f", "fc"], &["l"], vec![])
            .node("Softmax", &["l"], &["y"], vec![attrs::int("axis", -1)]);
        let swish = Tiny::new(13)
            .input("x", &[-1, 3, 8, 8])
            .output("y", &[-1, 3])
            .init("w", &[4, 3, 3, 3], &w(108))
            .init("lo", &[], &[0.0])
            .init("hi", &[], &[6.0])
            .init("fc", &[3, 4], &w(12))
            .init("bn_s", &[3], &w(3))
            .init("bn_b", &[3], &w(3))
            .init("bn_m", &[3], &w(3))
            .init("bn_v", &[3], &[1.0, 2.0, 3.0])
            .node("BatchNormalization", &["x", "bn_s", "bn_b", "bn_m", "bn_v"], &["n"], vec![])
            .node("Sigmoid", &["n"], &["s"], vec![])
            .node("Mul", &["n", "s"], &["m"], vec![])
            .node("Conv", &["m", "w"], &["c"], vec![attrs::int("group", 1), attrs::ints("pads", &[1, 1, 1, 1])])
            .node("Clip", &["c", "lo", "hi"], &["k"], vec![])
            .node("ReduceMean", &["k"], &["g"], vec![attrs::ints("axes", &[2, 3]), attrs::int("keepdims", 0)])
            .node("Gemm", &["g", "fc"], &["y"], vec![attrs::int("transB", 1)]);
        let tokens = Tiny::new(17)
            .input("x", &[-1, 3, 8, 8])
            .output("y", &[-1, 5])
            .init("pw", &[8, 3, 4, 4], &w(384))
            .init("cls", &[1, 1, 8], &w(8))
            .init_i64("flat", &[3], &[0, 8, -1])
            .init_i64("zero", &[1], &[0])
            .init("ln_s", &[8], &w(8))
            .init("ln_b", &[8], &w(8))
            .init("qk", &[8, 8], &w(64))
            .init("head", &[8, 5], &w(40))
            .node("Conv", &["x", "pw"], &["p"], vec![attrs::ints("strides", &[4, 4])])
            .node("Reshape", &["p", "flat"], &["r"], vec![])
            .node("Transpose", &["r"], &["t"], vec![attrs::ints("perm", &[0, 2, 1])])
            .node("Shape", &["t"], &["ts"], vec![])
            .node("Gather", &["ts", "zero"], &["n"], vec![attrs::int("axis", 0)])
            .node("Concat", &["n", "one", "eight"], &["cs"], vec![attrs::int("axis", 0)])
            .node("Expand", &["cls", "cs"], &["ce"], vec![])
            .node("Concat", &["ce", "t"], &["seq"], vec![attrs::int("axis", 1)])
            .node("LayerNormalization", &["seq", "ln_s", "ln_b"], &["ln"], vec![attrs::int("axis", -1)])
            .node("MatMul", &["ln", "qk"], &["q"], vec![])
            .node("Transpose", &["q"], &["qt"], vec![attrs::ints("perm", &[0, 2, 1])])
            .node("MatMul", &["q", "qt"], &["att"], vec![])
            .node("Softmax", &["att"], &["sm"], vec![attrs::int("axis", -1)])
            .node("MatMul", &["sm", "ln"], &["o"], vec![])
            .node("Add", &["o", "seq"], &["res"], vec![])
            .node("Gather", &["res", "zero0"], &["c0"], vec![attrs::int("axis", 1)])
            .node("MatMul", &["c0", "head"], &["y"], vec![])
            .init_i64("one", &[1], &[1])
            .init_i64("eight", &[1], &[8])
            .init_i64("zero0", &[], &[0]);
        let shapes = Tiny::new(17)
            .input("x", &[-1, 3, 8, 8])
            .output("y", &[-1, 6])
            .init("w", &[4, 3, 1, 1], &w(12))
            .init_i64("pads", &[8], &[0, 0, 1, 1, 0, 0, 1, 1])
            .init_i64("st", &[2], &[1, 1])
            .init_i64("en", &[2], &[9, 9])
            .init_i64("ax", &[2], &[2, 3])
            .init("fc", &[4, 6], &w(24))
            .node("Pad", &["x", "pads"], &["pd"], vec![])
            .node("Slice", &["pd", "st", "en", "ax"], &["sl"], vec![])
            .node("Conv", &["sl", "w"], &["c"], vec![])
            .node("Split", &["c"], &["c1", "c2"], vec![attrs::int("axis", 1)])
            .node("Concat", &["c2", "c1"], &["cc"], vec![attrs::int("axis", 1)])
            .node(
                "AveragePool",
                &["cc"],
                &["ap"],
                vec![attrs::ints("kernel_shape", &[2, 2]), attrs::ints("strides", &[2, 2])],
            )
            .node("LeakyRelu", &["ap"], &["lr"], vec![])
            .node("GlobalMaxPool", &["lr"], &["gm"], vec![])
            .node("Squeeze", &["gm", "ax"], &["sq"], vec![])
            .node("MatMul", &["sq", "fc"], &["y"], vec![]);
        let nhwc_sigmoid = Tiny::new(17)
            .input("x", &[-1, 3, 8, 8])
            .output("y", &[-1, 2])
            .init("w", &[4, 3, 3, 3], &w(108))
            .init("fc", &[4, 2], &w(8))
            .node("Conv", &["x", "w"], &["c"], vec![attrs::string("auto_pad", "SAME_UPPER")])
            .node("HardSwish", &["c"], &["h"], vec![])
            .node("Transpose", &["h"], &["t"], vec![attrs::ints("perm", &[0, 2, 3, 1])])
            .node("ReduceMean", &["t"], &["g"], vec![attrs::ints("axes", &[1, 2]), attrs::int("keepdims", 0)])
            .node("MatMul", &["g", "fc"], &["l"], vec![])
            .node("Sigmoid", &["l"], &["y"], vec![]);
        let _ = dtype::INT64;
        vec![
            ("cnn", cnn, vec![1, 3, 8, 8]),
            ("swish_bn_clip", swish, vec![1, 3, 8, 8]),
            ("tokens", tokens, vec![1, 3, 8, 8]),
            ("pad_slice_split", shapes, vec![1, 3, 8, 8]),
            ("sigmoid_channels_last", nhwc_sigmoid, vec![1, 3, 8, 8]),
        ]
    }

    /// Small thumbnails of the sample photos in every format camscope decodes.
    fn images(dir: &Path) {
        use image::ImageFormat as F;
        let photos = [("chelsea", "samples/tabby/chelsea.png"), ("flower", "samples/dahlia/flower.jpg")];
        for (name, rel) in photos {
            let img = image::open(root().join(rel)).unwrap().thumbnail(24, 18);
            for (fmt, ext) in [
                (F::Png, "png"),
                (F::Jpeg, "jpg"),
                (F::Gif, "gif"),
                (F::Bmp, "bmp"),
                (F::Tiff, "tiff"),
                (F::WebP, "webp"),
                (F::Pnm, "ppm"),
                (F::Ico, "ico"),
            ] {
                let img = if matches!(fmt, F::Jpeg | F::Pnm | F::WebP) {
                    image::DynamicImage::ImageRgb8(img.to_rgb8())
                } else {
                    img.clone()
                };
                img.save_with_format(dir.join(format!("{name}.{ext}")), fmt).unwrap();
            }
        }
        let grey = image::open(root().join("samples/tabby/chelsea.png")).unwrap().thumbnail(16, 12).to_luma_alpha16();
        image::DynamicImage::ImageLumaA16(grey).save_with_format(dir.join("grey16_alpha.png"), F::Png).unwrap();
    }
}
