//! The background scan of the inspector: the plain model over every listed image, against
//! ground truth, on a thread of its own (never the engine's: browsing stays instant).
//!
//! ## When it starts
//! Once the listing has finished. The scan wants the whole list at once: one pass over the
//! on-disk cache (a reopened 10,000-image folder fills in from it in a fraction of a second),
//! one cache file written at the end, and scan indices that are the listing's indices. Listing
//! is fast next to scanning (10,000 files list in well under a second on a local disk, while
//! scanning them takes minutes), so waiting for it costs little.
//!
//! ## Priority
//! The scan thread lowers its own scheduling priority to `SCHED_IDLE` (Linux) before it does
//! anything, and its ONNX Runtime session gets a thread pool of its own
//! ([`SessionOptions::own_pool`]) created on that thread, so the pool's threads and the
//! scan's decoder thread inherit the idle priority. The interactive engine keeps the
//! process-wide pool at normal priority: when the user asks for a map, the kernel hands the
//! cores to the engine and the UI at once (a waking normal thread always preempts an idle
//! one), and when the user only looks, the scan gets every core. A fixed split (e.g. one
//! intra-op thread for the scan) would idle a core while the user reads a heatmap and still
//! take a core while they browse.
//!
//! Measured on 2 cores (release build, `--trace`, 30 class switches, 40 moves to prefetched
//! images and 7 cold jumps while the scan of 6,000 generated images ran, batches of 4; p50 /
//! p95 in ms, scan in images/s; the inspector now scans in batches of 2, 188 / 204 images/s):
//!
//! | scan thread, pool | class switch | prefetched image | cold image | scan while browsing / idle |
//! | --- | --- | --- | --- | --- |
//! | no scan (baseline) | 7.0–7.6 / 8.1–10.8 | 7.2–7.4 / 12.7–12.9 | 18–19 / 22–23 | – |
//! | idle, 2 threads (chosen) | 6.9–7.9 / 9.1–14.6 | 7.8–9.3 / 13–15 | 21–22 / 26–31 | 200–211 / 208–230 |
//! | idle, 1 thread | 7.0–8.4 / 11 | 7.6–8.2 / 11–13 | 18–24 / 27–29 | 124–129 / 133–135 |
//! | normal, 2 threads | 12.7 / 16.7 | 13.8 / 22.2 | 28.5 / 40.6 | 218 / 238 |
//! | normal, 1 thread | 8.2 / 10.8 | 14.3 / 17.0 | 27.9 / 30.8 | 140 / 136 |
//!
//! ## Messages
//! Results are collected and sent at most every [`FLUSH`], not one by one: a scan served from
//! the cache produces thousands of results per second, and the UI thread recomputes orders
//! and the summary per message.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use crate::dataset::stats::ImageResult;
use crate::dataset::truth::GroundTruth;
use crate::engine::Fault;
use crate::triage::{self, ScanModel, ScanOptions, ScanUpdate};

/// How often the scan thread sends what it has found.
pub const FLUSH: Duration = Duration::from_millis(100);

/// What the scan needs: the model, where the truth comes from, and the scan settings.
#[derive(Debug, Clone)]
pub struct ScanJob {
    pub model: ScanModel,
    pub root: PathBuf,
    pub truth: GroundTruth,
    pub options: ScanOptions,
}

/// What the scan thread tells the UI.
#[derive(Debug, Clone)]
pub enum ScanEvent {
    /// Ground truth of every listed image (by listing index), sent before any result, with
    /// what the user should know once (folders that name no class, CSV warnings): a line for
    /// the status bar, and the notes in full for the summary view.
    Truth { truths: Vec<Option<usize>>, headline: Option<String>, notes: Vec<String> },
    /// No image has ground truth: nothing to triage, no scan. `reason` is for the status bar
    /// when the user asked for truth (`--labels`); folders that name no class are a plain
    /// folder of images, not a mistake, and are left quiet.
    NoTruth { reason: Option<String>, notes: Vec<String> },
    /// New results (listing index, result) and unreadable images; counts are totals so far.
    Progress {
        results: Vec<(usize, ImageResult)>,
        unreadable: Vec<(usize, String, Fault)>,
        computed: usize,
        cached: usize,
        /// Images per second of the model (cached results excluded), once known.
        rate: Option<f64>,
    },
    /// The scan ended (or was cancelled); `note` says what happened to the cache, if anything.
    Finished { seconds: f64, note: Option<String> },
    /// The scan could not run (the session could not be created, a model run failed).
    Failed(String),
}

/// The UI's side of the scan: cancel it and wait for it to save the cache.
pub struct ScanHandle {
    cancel: Arc<AtomicBool>,
    ended: Receiver<()>,
}

/// The listing thread's side: starts the scan once the listing is complete.
pub struct ScanStarter {
    job: ScanJob,
    cancel: Arc<AtomicBool>,
    /// Dropped when the scan thread ends (or when it never starts), which is what
    /// [`ScanHandle::stop`] waits for.
    ended: Sender<()>,
}

/// A scan waiting for its image list.
pub fn prepare(job: ScanJob) -> (ScanHandle, ScanStarter) {
    let cancel = Arc::new(AtomicBool::new(false));
    let (ended, ended_rx) = std::sync::mpsc::channel();
    (ScanHandle { cancel: cancel.clone(), ended: ended_rx }, ScanStarter { job, cancel, ended })
}

impl ScanHandle {
    /// Ask the scan (or the listing before it) to stop after the batch it is running.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Wait up to `wait` for the scan to end; true when it has (its cache saved).
    pub fn wait(&self, wait: Duration) -> bool {
        matches!(self.ended.recv_timeout(wait), Err(RecvTimeoutError::Disconnected))
    }

    /// [`cancel`](Self::cancel) then [`wait`](Self::wait).
    pub fn stop(&self, wait: Duration) -> bool {
        self.cancel();
        self.wait(wait)
    }
}

impl ScanStarter {
    /// Whether the UI asked the scan to stop (the listing stops early too).
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Start the scan thread over `images` (the complete listing); events go through `send`.
    pub fn start<M: Send + 'static>(self, images: Vec<PathBuf>, tx: Sender<M>, wrap: fn(ScanEvent) -> M) {
        std::thread::Builder::new()
            .name("camscope-scan".into())
            .spawn(move || {
                let _ended = self.ended;
                lower_priority();
                let send = |e: ScanEvent| tx.send(wrap(e)).is_ok();
                run(self.job, &images, &self.cancel, &send);
            })
            .expect("spawn the scan thread");
    }
}

/// Make the calling thread (and the threads it starts from now on) yield to every normal
/// thread of the system: `SCHED_IDLE` on Linux, the lowest nice value elsewhere. Best effort.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 is the calling thread; the call only changes its scheduling policy.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0 {
            return;
        }
    }
    #[cfg(unix)]
    // SAFETY: on Linux PRIO_PROCESS with 0 is the calling thread; elsewhere the process.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
}

/// Results collected between two messages.
struct Pending {
    results: Vec<(usize, ImageResult)>,
    unreadable: Vec<(usize, String, Fault)>,
    computed: usize,
    cached: usize,
    /// When the model started (the cached results were all served by then).
    compute_from: Instant,
    last_flush: Instant,
}

impl Pending {
    fn event(&mut self) -> ScanEvent {
        let secs = self.compute_from.elapsed().as_secs_f64();
        ScanEvent::Progress {
            results: std::mem::take(&mut self.results),
            unreadable: std::mem::take(&mut self.unreadable),
            computed: self.computed,
            cached: self.cached,
            rate: (self.computed > 0 && secs > 0.0).then(|| self.computed as f64 / secs),
        }
    }
}

/// The scan itself: truth for every image, then the results, then how it ended.
fn run(job: ScanJob, images: &[PathBuf], cancel: &AtomicBool, send: &dyn Fn(ScanEvent) -> bool) {
    let ScanJob { model, root, mut truth, options } = job;
    let truths: Vec<Option<usize>> = images.iter().map(|p| truth.truth(p)).collect();
    let notes = truth_notes(&truth, images);
    let headline = headline(&truth, notes.len());
    if !truths.iter().any(Option::is_some) {
        let reason = match &truth {
            GroundTruth::Csv(c) => Some(format!("{} names none of the images", c.file().display())),
            _ => None,
        };
        send(ScanEvent::NoTruth { reason, notes });
        return;
    }
    if !send(ScanEvent::Truth { truths, headline, notes }) {
        return;
    }
    let now = Instant::now();
    let mut p = Pending {
        results: Vec::new(),
        unreadable: Vec::new(),
        computed: 0,
        cached: 0,
        compute_from: now,
        last_flush: now,
    };
    let mut gone = false;
    let t0 = Instant::now();
    let report = triage::scan(&model, images, &root, &mut truth, &options, |u| {
        match u {
            ScanUpdate::Result { index, result, cached, .. } => {
                if cached {
                    p.cached += 1;
                    p.compute_from = Instant::now();
                } else {
                    p.computed += 1;
                }
                p.results.push((index, result));
            }
            ScanUpdate::Unreadable { index, error, fault } => p.unreadable.push((index, error, fault)),
        }
        if p.last_flush.elapsed() >= FLUSH {
            p.last_flush = Instant::now();
            gone = !send(p.event());
        }
        !gone && !cancel.load(Ordering::Relaxed)
    });
    // The scan's session is gone: hand its memory back (browsing goes on for hours).
    crate::engine::release_free_memory();
    if gone {
        return;
    }
    match report {
        Ok(r) => {
            send(p.event());
            send(ScanEvent::Finished { seconds: t0.elapsed().as_secs_f64(), note: r.cache_note });
        }
        Err(e) => {
            send(p.event());
            send(ScanEvent::Failed(e.to_string()));
        }
    }
}

/// One line for the status bar when there are notes: which folders name no class.
fn headline(truth: &GroundTruth, notes: usize) -> Option<String> {
    match truth {
        GroundTruth::Folders(f) if !f.problems().is_empty() => {
            let names: Vec<String> = f
                .problems()
                .iter()
                .map(|p| {
                    p.folder.file_name().map_or_else(|| p.folder.display().to_string(), |n| n.to_string_lossy().into())
                })
                .collect();
            let (s, verb) = if names.len() == 1 { ("", "names") } else { ("s", "name") };
            Some(format!("folder{s} {} {verb} no class: unlabeled (t: summary)", names.join(", ")))
        }
        _ if notes > 0 => Some(format!("{notes} note{} on the labels (t: summary)", if notes == 1 { "" } else { "s" })),
        _ => None,
    }
}

/// What the user should be told once about the ground truth.
fn truth_notes(truth: &GroundTruth, images: &[PathBuf]) -> Vec<String> {
    match truth {
        GroundTruth::None => Vec::new(),
        GroundTruth::Folders(f) => f.problems().iter().map(ToString::to_string).collect(),
        GroundTruth::Csv(c) => {
            let mut notes: Vec<String> = c.warnings().iter().map(ToString::to_string).collect();
            let missing = c.rows_without_image(images);
            if let Some((line, path)) = missing.first() {
                notes.push(format!(
                    "{}: {} row{} name{} no listed image (first: line {line}, {}); those rows are not counted",
                    c.file().display(),
                    missing.len(),
                    if missing.len() == 1 { "" } else { "s" },
                    if missing.len() == 1 { "s" } else { "" },
                    path.display()
                ));
            }
            notes
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job whose model does not exist: anything that reaches ONNX Runtime fails.
    fn job() -> ScanJob {
        let card = crate::model::ModelCard::infer(std::path::Path::new("none.onnx"), "x", &[1, 3, 8, 8]).unwrap();
        ScanJob {
            model: ScanModel {
                path: PathBuf::from("no/such/model.onnx"),
                card,
                input: "x".into(),
                output: "y".into(),
                classes: 2,
                fixed_batch: false,
                head: Default::default(),
            },
            root: PathBuf::from("/data"),
            truth: GroundTruth::None,
            options: ScanOptions::new(Default::default()),
        }
    }

    #[test]
    fn stop_returns_once_the_starter_is_gone() {
        let (handle, starter) = prepare(job());
        assert!(!handle.stop(Duration::from_millis(10)), "the starter still holds the scan");
        assert!(starter.cancelled(), "stop tells the listing to stop too");
        drop(starter);
        assert!(handle.stop(Duration::from_secs(1)));
    }

    #[test]
    fn no_truth_ends_the_scan_before_the_model_is_touched() {
        let (handle, starter) = prepare(job());
        let (tx, rx) = std::sync::mpsc::channel();
        starter.start(vec![PathBuf::from("/data/a.png")], tx, |e| e);
        match rx.recv_timeout(Duration::from_secs(10)).unwrap() {
            ScanEvent::NoTruth { reason, .. } => assert_eq!(reason, None, "folders: quiet"),
            other => panic!("expected NoTruth, got {other:?}"),
        }
        assert!(handle.stop(Duration::from_secs(10)));
    }
}
