//! The thread that owns the [`Engine`]: the UI sends it [`Request`]s and gets [`Response`]s
//! back, and never waits on ONNX Runtime or image decoding itself.
//!
//! Priorities, highest first: settings (layer, score kind) in the order sent; the latest
//! [`Request::Show`] (older ones still queued are dropped unanswered: the user has moved on);
//! then prefetching the neighbours of the selected image, one at a time, so a new `Show` waits
//! for at most one background image. Every answer carries the serial of its request; the UI
//! drops answers older than what it asked for last.
//!
//! A running computation is not interrupted (ONNX Runtime runs cannot be), so a slow method
//! such as Score-CAM finishes before the next request starts; the UI meanwhile shows
//! "computing…" and stays responsive. Quitting is the exception: [`Worker::stop`] sets the
//! engine's stop flag, so a Score-CAM ends after the model run in progress, and
//! [`Worker::join`] waits for the thread to drop the engine (the process must not exit while
//! ONNX Runtime is in use).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::cam::{MapStatus, Method};
use crate::engine::Fault;
use crate::engine::{Engine, Loaded, Seed};
use crate::explanation::Timings;
use crate::grad::ScoreKind;

use super::state::{EngineInfo, LayerInfo};

/// What the UI asks the worker for.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Load `path` (from the cache when possible) and compute `method`'s map for `class`
    /// (`None`: the image's top-1 class); with `versus` (a true class), also the maps of the
    /// compare view: that class's, and the contrast of `class` against it.
    Show { serial: u64, path: PathBuf, class: Option<usize>, method: Method, versus: Option<usize> },
    /// Load these images in the background, nearest first (replaces any earlier list).
    Prefetch { paths: Vec<PathBuf> },
    /// Switch the target layer (clears the engine's cache).
    SetLayer { tensor: String },
    /// Switch between logit and probability scores.
    SetScore { score: ScoreKind },
}

/// What the worker answers.
#[derive(Debug, Clone)]
pub enum Response {
    /// Body results of the image a `Show` asked for.
    Loaded { serial: u64, path: PathBuf, loaded: Arc<Loaded>, cached: bool, cache: (usize, usize) },
    /// The map a `Show` asked for.
    Map {
        serial: u64,
        path: PathBuf,
        class: usize,
        method: Method,
        map: Arc<ndarray::Array2<f32>>,
        status: MapStatus,
        timings: Timings,
        /// The compare view's maps, when the `Show` had `versus`.
        compare: Option<CompareMaps>,
        /// The engine's caches after the map (its head result and tape are in them now).
        cache: (usize, usize),
    },
    /// The image of a `Show` (or a prefetch) could not be used.
    Failed { serial: Option<u64>, path: PathBuf, error: String, fault: Fault },
    /// A prefetched image's top-1 prediction.
    Predicted { path: PathBuf, class: usize, probability: f32, cache: (usize, usize) },
    /// The layer switch took effect (or why not).
    LayerSet { result: Result<LayerInfo, String> },
    /// The score kind switch took effect (or why not).
    ScoreSet { result: Result<ScoreKind, String> },
}

/// The compare view's maps besides the class's own: the true class's map, and the contrast
/// (class minus true class: the evidence that made the model prefer the class). Three head
/// runs in all, so the view costs little more than one map.
#[derive(Debug, Clone)]
pub struct CompareMaps {
    pub truth: usize,
    pub truth_map: Arc<ndarray::Array2<f32>>,
    pub truth_status: MapStatus,
    pub contrast: Arc<ndarray::Array2<f32>>,
    pub contrast_status: MapStatus,
}

/// The worker thread and the way to talk to it.
pub struct Worker {
    requests: Option<Sender<Request>>,
    handle: Option<JoinHandle<()>>,
    /// Disconnected when the thread ends (the same way as the scan's `ScanHandle`).
    ended: Receiver<()>,
    /// The engine's stop flag ([`Engine::stop_flag`]).
    stop: Arc<AtomicBool>,
}

impl Worker {
    /// Start the thread; answers go through `answer` wrapped by `wrap` (the UI's message type).
    pub fn spawn<M: Send + 'static>(engine: Engine, answers: Sender<M>, wrap: fn(Response) -> M) -> Self {
        let (requests, rx) = std::sync::mpsc::channel();
        let stop = engine.stop_flag();
        let (ended_tx, ended) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("camscope-engine".into())
            .spawn(move || {
                // Dropped last, after the engine (also when unwinding): what `join` waits for.
                let _ended = ended_tx;
                serve(engine, &rx, &|r| answers.send(wrap(r)).is_ok());
            })
            .expect("spawn the engine thread");
        Self { requests: Some(requests), handle: Some(handle), ended, stop }
    }

    /// Ask for something; a stopped worker is noticed by the UI through its answer channel.
    pub fn send(&self, r: Request) {
        if let Some(requests) = &self.requests {
            let _ = requests.send(r);
        }
    }

    /// Stop the engine's runs that have not started and close the request channel, without
    /// waiting: call it first when quitting, so the thread winds down while the terminal is
    /// given back.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.requests = None;
    }

    /// [`stop`](Self::stop), then wait until `deadline` for the thread to end (its engine and
    /// ONNX Runtime sessions dropped); true when it has.
    pub fn join(&mut self, deadline: Instant) -> bool {
        self.stop();
        let wait = deadline.saturating_duration_since(Instant::now());
        if !matches!(self.ended.recv_timeout(wait), Err(RecvTimeoutError::Disconnected)) {
            return false;
        }
        if let Some(handle) = self.handle.take() {
            // Its panic, if any, was recorded by the panic hook already.
            let _ = handle.join();
        }
        true
    }

    /// Whether the thread has ended (before the UI closed the channel, only by panicking).
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

/// What the engine knows that the UI shows.
pub fn engine_info(engine: &Engine) -> EngineInfo {
    let (provider, fallback) = engine.provider();
    let card = &engine.model().card;
    EngineInfo {
        model_name: card.name.clone(),
        layer: layer_info(engine.target()),
        // Maps after a transformer's class-token pick are no choice: every patch gets zero.
        layers: engine
            .model()
            .analysis
            .candidates()
            .iter()
            .filter(|c| c.op != "Input" && c.reaches_patches)
            .map(layer_info)
            .collect(),
        score: engine.score_kind(),
        provider: provider.to_string(),
        fallback,
        cache_note: match &engine.model().shape_cache {
            crate::engine::probe_cache::CacheUse::Unavailable(why) => {
                Some(format!("shape cache unavailable, next start measures again ({why})"))
            }
            _ => None,
        },
        labels: Arc::new(card.labels()),
    }
}

fn layer_info(c: &crate::grad::Candidate) -> LayerInfo {
    // Channels-last and token maps say so beside their shape (NCHW is the common case).
    let shape = match c.layout {
        crate::grad::MapLayout::Nchw => c.shape_string(),
        other => format!("{} {other}", c.shape_string()),
    };
    LayerInfo { tensor: c.tensor.clone(), op: c.op.clone(), shape, is_default: c.is_default }
}

/// Work waiting in the worker, by priority.
#[derive(Default)]
struct Queue {
    settings: VecDeque<Request>,
    show: Option<Request>,
    /// The shown image's other top classes whose head results to compute while the user looks
    /// at it (one per turn, so a new `Show` waits for at most one head).
    warm: Option<(PathBuf, VecDeque<usize>, Method)>,
    prefetch: VecDeque<PathBuf>,
    /// Gradient sessions may still be waiting to open while idle (`Engine::open_next_session`):
    /// set by each map shown and each new layer or score kind (which rebuild the graphs).
    sessions: bool,
}

impl Queue {
    fn absorb(&mut self, r: Request) {
        match r {
            Request::Show { .. } => {
                // The user has moved on: warming the previous image's classes is moot.
                self.warm = None;
                self.show = Some(r);
            }
            Request::Prefetch { paths } => self.prefetch = paths.into(),
            other => self.settings.push_back(other),
        }
    }

    fn is_empty(&self) -> bool {
        self.settings.is_empty()
            && self.show.is_none()
            && self.warm.is_none()
            && self.prefetch.is_empty()
            && !self.sessions
    }

    /// Take everything already sent, without waiting. False when the UI has gone.
    fn drain(&mut self, rx: &Receiver<Request>) -> bool {
        loop {
            match rx.try_recv() {
                Ok(r) => self.absorb(r),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }
}

/// The worker's loop: runs until the UI closes the request channel or stops listening.
fn serve(mut engine: Engine, rx: &Receiver<Request>, answer: &dyn Fn(Response) -> bool) {
    let mut q = Queue::default();
    loop {
        if q.is_empty() {
            match rx.recv() {
                Ok(r) => q.absorb(r),
                Err(_) => return,
            }
        }
        if !q.drain(rx) {
            return;
        }
        let ok = if let Some(s) = q.settings.pop_front() {
            q.sessions = true;
            answer(apply_setting(&mut engine, s))
        } else if let Some(Request::Show { serial, path, class, method, versus }) = q.show.take() {
            // Not before the first map: it would wait for a session it does not need.
            q.sessions = true;
            show(&mut engine, &mut q, rx, ShowArgs { serial, path, class, method, versus }, answer)
        } else if let Some((path, mut classes, method)) = q.warm.take() {
            if let Some(class) = classes.pop_front() {
                // Failures are answered when the class is actually shown.
                if let Ok(loaded) = engine.load(&path) {
                    let _ = engine.warm(&loaded, &[class], method);
                }
            }
            if !classes.is_empty() {
                q.warm = Some((path, classes, method));
            }
            true
        } else if let Some(path) = q.prefetch.pop_front() {
            prefetch(&mut engine, path, answer)
        } else if q.sessions {
            // A failure here is answered when a map needs that session.
            q.sessions = engine.open_next_session().unwrap_or(false);
            true
        } else {
            true
        };
        if !ok {
            return;
        }
    }
}

fn apply_setting(engine: &mut Engine, s: Request) -> Response {
    match s {
        Request::SetLayer { tensor } => Response::LayerSet {
            result: engine.set_layer(Some(&tensor)).map(|()| layer_info(engine.target())).map_err(|e| e.to_string()),
        },
        Request::SetScore { score } => {
            Response::ScoreSet { result: engine.set_score(score).map(|()| score).map_err(|e| e.to_string()) }
        }
        other => unreachable!("not a setting: {other:?}"),
    }
}

/// A `Show` request's fields.
struct ShowArgs {
    serial: u64,
    path: PathBuf,
    class: Option<usize>,
    method: Method,
    versus: Option<usize>,
}

fn show(
    engine: &mut Engine,
    q: &mut Queue,
    rx: &Receiver<Request>,
    args: ShowArgs,
    answer: &dyn Fn(Response) -> bool,
) -> bool {
    let ShowArgs { serial, path, class, method, versus } = args;
    let cached = engine.is_cached(&path);
    let loaded = match engine.load(&path) {
        Ok(l) => l,
        Err(e) => {
            return answer(Response::Failed { serial: Some(serial), path, error: e.to_string(), fault: e.fault() });
        }
    };
    let cache = engine.cache_usage();
    let loaded_answer = Response::Loaded { serial, path: path.clone(), loaded: loaded.clone(), cached, cache };
    // A fast map follows its image at once, so both reach the UI together and are drawn in one
    // frame; a slow one (extra model runs) lets the image show first, marked "computing…".
    let slow = is_slow(method);
    let mut pending = Some(loaded_answer);
    if slow && !answer(pending.take().expect("not sent yet")) {
        return false;
    }
    // The user may have moved on while the image loaded: then its map is not wanted.
    if !q.drain(rx) {
        return false;
    }
    if q.show.is_some() || !q.settings.is_empty() {
        return pending.is_none_or(answer);
    }
    let class = class.unwrap_or_else(|| loaded.scores.argmax());
    // Switching among the top classes is what users do next: their heads are computed in the
    // background after this map (only for methods whose cost is the head).
    if method.needs().gradients && !is_slow(method) {
        let top: VecDeque<usize> =
            loaded.scores.top_k_indices(WARM_CLASSES).into_iter().filter(|&c| c != class).collect();
        q.warm = Some((path.clone(), top, method));
    }
    let map = engine.map(&loaded, method, &Seed::Class(class)).and_then(|out| {
        let Some(truth) = versus else { return Ok((out, None)) };
        let t = engine.map(&loaded, method, &Seed::Class(truth))?;
        let c = engine.map(&loaded, method, &Seed::Contrast { positive: class, negative: truth })?;
        let mut out = out;
        for extra in [&t.timings, &c.timings] {
            out.timings.head_ms += extra.head_ms;
            out.timings.map_ms += extra.map_ms;
        }
        let compare = CompareMaps {
            truth,
            truth_map: Arc::new(t.normalized.map),
            truth_status: t.normalized.status,
            contrast: Arc::new(c.normalized.map),
            contrast_status: c.normalized.status,
        };
        Ok((out, Some(compare)))
    });
    if let Some(a) = pending {
        if !answer(a) {
            return false;
        }
    }
    match map {
        Ok((out, compare)) => {
            let mut timings = out.timings;
            if !cached {
                timings.decode_ms = loaded.timings.decode_ms;
                timings.body_ms = loaded.timings.body_ms;
            }
            answer(Response::Map {
                serial,
                path,
                class,
                method,
                map: Arc::new(out.normalized.map),
                status: out.normalized.status,
                timings,
                compare,
                cache: engine.cache_usage(),
            })
        }
        Err(e) => answer(Response::Failed { serial: Some(serial), path, error: e.to_string(), fault: e.fault() }),
    }
}

/// Classes of the shown image whose heads are computed ahead of a class switch (the top list
/// the inspector shows and the keys step through).
const WARM_CLASSES: usize = 5;

/// Whether a method needs many extra model runs (seconds rather than milliseconds).
fn is_slow(method: Method) -> bool {
    let needs = method.needs();
    needs.model_runs != crate::cam::ModelRuns::None || needs.input_gradients
}

fn prefetch(engine: &mut Engine, path: PathBuf, answer: &dyn Fn(Response) -> bool) -> bool {
    match engine.load(&path) {
        Ok(l) => {
            let class = l.scores.argmax();
            let probability = l.scores.probabilities[class];
            answer(Response::Predicted { path, class, probability, cache: engine.cache_usage() })
        }
        Err(e) => answer(Response::Failed { serial: None, path, error: e.to_string(), fault: e.fault() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(serial: u64) -> Request {
        Request::Show {
            serial,
            path: PathBuf::from(format!("{serial}.png")),
            class: None,
            method: Method::GradCam,
            versus: None,
        }
    }

    #[test]
    fn only_the_latest_show_is_kept_and_settings_keep_their_order() {
        let mut q = Queue::default();
        q.absorb(show(1));
        q.absorb(Request::SetScore { score: ScoreKind::Prob });
        q.absorb(show(2));
        q.absorb(Request::SetLayer { tensor: "x".into() });
        q.absorb(Request::Prefetch { paths: vec!["a".into(), "b".into()] });
        q.absorb(show(3));
        q.absorb(Request::Prefetch { paths: vec!["c".into()] });
        assert_eq!(q.show, Some(show(3)));
        assert_eq!(q.prefetch, VecDeque::from(vec![PathBuf::from("c")]));
        assert!(matches!(q.settings[0], Request::SetScore { .. }));
        assert!(matches!(q.settings[1], Request::SetLayer { .. }));
    }

    #[test]
    fn drain_takes_what_was_sent_and_notices_a_closed_channel() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut q = Queue::default();
        tx.send(show(1)).unwrap();
        tx.send(show(2)).unwrap();
        assert!(q.drain(&rx));
        assert_eq!(q.show, Some(show(2)));
        drop(tx);
        assert!(!q.drain(&rx));
    }
}
