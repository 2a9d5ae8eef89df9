//! The interactive inspector (`camscope [PATH]`): files | image | classes, with instant class
//! switching. The only module that knows ratatui and crossterm.
//!
//! Threads: the UI thread (this run loop) owns the [`state::App`] and the terminal; the engine
//! thread ([`worker`]) owns the model; the listing thread walks PATH; the scan thread
//! ([`scanner`], with ground truth only) runs the plain model over every image at idle
//! priority once the listing is complete; the input thread turns terminal events (and quit
//! signals) into messages; a short thread per save writes the PNG.
//! Everything reaches the UI thread through one channel of [`update::Msg`]s, which the loop
//! drains completely before drawing one frame: a storm of resizes or key repeats costs one
//! redraw, and a frame is drawn only after something changed.
//!
//! Testing hook: with `CAMSCOPE_TEST_PANIC=1` in the environment the UI thread panics right
//! after drawing its first frame. The end-to-end tests use it to check that a panic restores the
//! terminal; nothing else reads it.

pub mod image_view;
pub mod keys;
pub mod probe;
pub mod recorded;
pub mod scanner;
pub mod state;
pub mod summary_view;
pub mod terminal;
#[cfg(test)]
mod testing;
pub mod triage;
pub mod update;
pub mod view;
pub mod worker;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossterm::event::{self, Event};

use crate::cam::Method;
use crate::dataset::scan::Scan;
use crate::engine::Engine;
use crate::render::{self, Colormap};

pub use self::image_view::{ColorDepth, Graphics, Renderer, TermInfo};
pub use self::recorded::Recorded;
pub use self::scanner::ScanJob;
use self::scanner::{ScanHandle, ScanStarter};
use self::state::{App, Settings};
use self::update::{Cmd, Msg};
use self::worker::{Request, Response, Worker};

/// Why the inspector could not run or stopped.
#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    #[error("the inspector needs an interactive terminal on stdin and stdout; use `camscope explain` in scripts")]
    NotATerminal,
    #[error("terminal error: {0}; check that the terminal is still open")]
    Terminal(#[from] std::io::Error),
    #[error("{}: cannot write the trace: {source}; choose a writable --trace path", path.display())]
    Trace { path: PathBuf, source: std::io::Error },
    #[error("the engine thread stopped: {0}; this is a bug, please report it with the image that caused it")]
    WorkerStopped(String),
}

/// What `camscope [PATH]` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    pub root: PathBuf,
    pub top_k: usize,
    pub method: Method,
    pub colormap: Colormap,
    pub alpha: f64,
    pub graphics: Graphics,
    /// Where `s` writes overlays.
    pub save_dir: PathBuf,
    /// Write event and frame timings here (JSON lines).
    pub trace: Option<PathBuf>,
    /// The background scan against ground truth, when PATH is a folder.
    pub triage: Option<ScanJob>,
    /// Key bindings (the defaults, or a user file over them).
    pub keys: keys::KeyList,
}

/// The images the inspector shows.
#[derive(Debug)]
pub enum Source {
    /// A folder (or one image), listed on a thread of its own; with [`Options::triage`], a
    /// scan against ground truth follows the listing.
    Folder(Scan),
    /// The results `camscope triage` recorded in an output folder: no listing, no scan.
    Recorded(Box<Recorded>),
}

/// How long quitting waits for the scan to finish its batch and save its cache, and for the
/// engine to finish its model run.
const STOP_WAIT: Duration = Duration::from_secs(5);
/// How much longer it waits, saying so, when [`STOP_WAIT`] was not enough: the scan's threads
/// run at idle priority, and a machine kept busy by other programs leaves them almost no time
/// to finish their batch and write the cache.
const LONG_STOP_WAIT: Duration = Duration::from_secs(60);

/// Images sent per listing message after the first (small) one.
const LIST_CHUNK: usize = 512;
/// The first listing message is small so the first image is selected at once.
const FIRST_CHUNK: usize = 32;

/// Run the inspector until the user quits. `engine` is already loaded (so a bad model is
/// reported before the terminal is taken over) and `source` already opened.
pub fn run(engine: Engine, source: Source, opts: Options) -> Result<(), TuiError> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(TuiError::NotATerminal);
    }
    let mut trace = match &opts.trace {
        Some(p) => Some(Trace::create(p)?),
        None => None,
    };
    let settings = Settings {
        root: opts.root.clone(),
        top_k: opts.top_k,
        method: opts.method,
        colormap: opts.colormap,
        alpha: opts.alpha,
        save_dir: opts.save_dir.clone(),
        keys: opts.keys.clone(),
    };
    let recorded = matches!(source, Source::Recorded(_));
    let mut app = App::new(settings, worker::engine_info(&engine), opts.triage.is_some() || recorded);
    let (tx, rx) = std::sync::mpsc::channel::<Msg>();
    let mut worker = Worker::spawn(engine, tx.clone(), Msg::Worker);
    let (scan_handle, starter) = match opts.triage.clone() {
        Some(job) => {
            let (h, s) = scanner::prepare(job);
            (Some(h), Some(s))
        }
        None => (None, None),
    };
    // What the first frame must not wait for: the request for the first image's map.
    let mut first_cmds = Vec::new();
    match source {
        Source::Folder(scan) => spawn_lister(scan, tx.clone(), starter),
        Source::Recorded(r) => {
            // Everything recorded goes into the state before the first frame, so the list,
            // the marks and the summary are there at once; only the check for images
            // missing under the root (stat calls, slow on a network file system) follows.
            recorded::spawn_missing_check(r.root.clone(), r.images.clone(), tx.clone(), Msg::Missing);
            first_cmds = update::update(&mut app, Msg::Recorded(r));
            first_cmds.extend(update::settle(&mut app));
        }
    }

    let mut session = terminal::Session::start()?;
    // The terminal is queried before the input thread starts reading events; what it has not
    // answered by the deadline the input thread consumes before reading events.
    let mut term = TermInfo::from_env();
    let size = session.terminal.size()?;
    term.cells = (size.width, size.height);
    term.pixels = crossterm::terminal::window_size().map(|w| (w.width, w.height)).unwrap_or_default();
    let (early_keys, late) = if term.needs_query(opts.graphics) {
        let probe = probe::query(probe::deadline())?;
        term.answers = Some(probe.answers);
        term.waited = probe.waited;
        (probe.keys, probe.late)
    } else {
        (Vec::new(), None)
    };
    let (renderer, note) = Renderer::choose_for(opts.graphics, &term);
    let mut images = image_view::ImageView::with_note(renderer, note);
    if let Some(t) = &mut trace {
        t.graphics = images.describe().to_owned();
    }
    spawn_input(tx.clone(), early_keys, late);
    let size = session.terminal.size()?;
    app.size = (size.width, size.height);
    let test_panic = std::env::var_os("CAMSCOPE_TEST_PANIC").is_some_and(|v| v == "1");

    let mut saves = Vec::new();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| -> Result<(), TuiError> {
        let mut dirty = true;
        let mut prefetch: Option<Request> = None;
        for cmd in first_cmds {
            dispatch(cmd, &app, trace.as_mut(), &mut prefetch, &worker, &tx, &mut saves);
        }
        loop {
            if dirty {
                let t0 = Instant::now();
                session.draw(|f| view::draw(f, &app, &mut images))?;
                app.frame_ms = t0.elapsed().as_secs_f64() * 1e3;
                if let Some(t) = &mut trace {
                    t.frame(&app);
                }
                dirty = false;
                // Prefetching waits until what the user asked for is on screen: on two cores a
                // background model run next to the frame being drawn delays that frame.
                if !app.computing() {
                    if let Some(r) = prefetch.take() {
                        worker.send(r);
                    }
                }
                if test_panic {
                    panic!("CAMSCOPE_TEST_PANIC=1: deliberate panic after the first frame (terminal restoration test)");
                }
            }
            if app.quit {
                return Ok(());
            }
            let first = match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    check_worker(&worker)?;
                    // The input thread may be stuck inside crossterm when the terminal is gone
                    // (it spins on a hung-up tty), so signals and hang-ups are checked here too.
                    if terminal::quit_requested() || terminal::hung_up() {
                        return Ok(());
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            };
            let mut next = Some(first);
            while let Some(msg) = next {
                if let Msg::Answers(answers, after) = msg {
                    if let Some(note) = late_answers(&mut images, &mut term, opts.graphics, *answers, after) {
                        if let Some(t) = &mut trace {
                            t.graphics(&note);
                        }
                    }
                    next = rx.try_recv().ok();
                    continue;
                }
                if let Some(t) = &mut trace {
                    t.message(&msg);
                }
                let cmds = update::update(&mut app, msg);
                for cmd in cmds {
                    dispatch(cmd, &app, trace.as_mut(), &mut prefetch, &worker, &tx, &mut saves);
                }
                next = rx.try_recv().ok();
            }
            // Once per frame, whatever the number of scan messages drained above.
            for cmd in update::settle(&mut app) {
                dispatch(cmd, &app, None, &mut prefetch, &worker, &tx, &mut saves);
            }
            dirty = true;
        }
    }));
    // The same way out after a return, an error or a panic: the scan and the engine are told
    // to stop, the terminal is given back (after a panic the hook has done it already, before
    // printing the message), then the threads are waited for. The process must not exit while
    // one of them is still inside ONNX Runtime: its exit-time destructors would crash it.
    if let Some(h) = &scan_handle {
        h.cancel();
    }
    worker.stop();
    drop(session);
    let mut ended = wait_for_threads(scan_handle.as_ref(), &mut worker, Instant::now() + STOP_WAIT);
    if !ended {
        // Only on a starved machine (the scan runs at idle priority) or with a huge model: say
        // so, and let a second Ctrl-C end the process at once (its default action runs no
        // exit-time destructors, so it cannot crash either).
        terminal::default_signals();
        eprintln!(
            "camscope: finishing the model run in progress and saving the scan's results (up to {} s more); Ctrl-C quits without them",
            LONG_STOP_WAIT.as_secs()
        );
        ended = wait_for_threads(scan_handle.as_ref(), &mut worker, Instant::now() + LONG_STOP_WAIT);
    }
    for save in saves {
        // A PNG is written in milliseconds; quitting must not leave a truncated one.
        let _ = save.join();
    }
    if let Some(t) = &mut trace {
        let p = &app.triage.progress;
        t.exit(p.computed + p.cached);
    }
    if !ended {
        exit_while_busy(&outcome);
    }
    match outcome {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// The terminal's answers arrived `after` the queries, past the first frame's deadline (a
/// slow SSH link): choose the renderer again from them, and switch when the choice differs
/// (half-blocks to kitty or sixel, 256 colours to 24-bit). The image view erases what it drew
/// when the pane changes between cells and graphics, so the switch leaves nothing stale.
/// Returns the new note for the status bar when the renderer changed.
fn late_answers(
    images: &mut image_view::ImageView,
    term: &mut TermInfo,
    graphics: Graphics,
    answers: probe::Answers,
    after: Duration,
) -> Option<String> {
    term.answers = Some(answers);
    term.waited = after;
    let (renderer, note) = Renderer::choose_for(graphics, term);
    let note = format!("{note}; the terminal answered after {} ms", after.as_millis());
    if renderer.describe() == images.renderer.describe() {
        // The same choice, now for a known reason ("no answer" is no longer true).
        images.note = note;
        return None;
    }
    images.set_renderer(renderer, note.clone());
    Some(note)
}

/// Wait until `deadline` for the scan (its cache saved) and the engine thread (its sessions
/// dropped) to end; true when both have.
fn wait_for_threads(scan: Option<&ScanHandle>, worker: &mut Worker, deadline: Instant) -> bool {
    let scan_ended = scan.is_none_or(|h| h.wait(deadline.saturating_duration_since(Instant::now())));
    worker.join(deadline) && scan_ended
}

/// A model run still going after [`LONG_STOP_WAIT`] (a huge model on a slow CPU): end the process
/// without the exit-time destructors of ONNX Runtime, which would crash it under the running
/// thread. Says what `main` would have said.
fn exit_while_busy(outcome: &std::thread::Result<Result<(), TuiError>>) -> ! {
    let code = match outcome {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            eprintln!("camscope: error: {e}");
            1
        }
        // The panic hook has printed the message.
        Err(_) => 101,
    };
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` ends the process at once; the outputs were flushed above and the
    // terminal restored, which is all the clean-up left to do.
    unsafe { libc::_exit(code) }
}

fn check_worker(worker: &Worker) -> Result<(), TuiError> {
    if worker.is_finished() {
        let why = worker_panic().unwrap_or_else(|| "it ended without saying why".into());
        return Err(TuiError::WorkerStopped(why));
    }
    Ok(())
}

/// A panic on another thread than the UI's, kept for the error message: printing it while the
/// terminal is taken over would be lost (or garble the frame).
static THREAD_PANIC: Mutex<Option<String>> = Mutex::new(None);

fn worker_panic() -> Option<String> {
    THREAD_PANIC.lock().ok()?.clone()
}

/// Record panics of the engine thread instead of printing them (see [`THREAD_PANIC`]); the UI
/// thread's panics go to the terminal hook, which restores the terminal first.
pub(crate) fn note_thread_panic(info: &std::panic::PanicHookInfo<'_>) -> bool {
    if std::thread::current().name() == Some("main") {
        return false;
    }
    if let Ok(mut slot) = THREAD_PANIC.lock() {
        slot.get_or_insert_with(|| info.to_string().replace('\n', " "));
    }
    true
}

/// One command from `update`: traced when `trace` is given; a prefetch is held back until the
/// frame answering the user is drawn (it replaces any older one), the rest run now.
fn dispatch(
    cmd: Cmd,
    app: &App,
    trace: Option<&mut Trace>,
    prefetch: &mut Option<Request>,
    worker: &Worker,
    tx: &Sender<Msg>,
    saves: &mut Vec<JoinHandle<()>>,
) {
    if let Some(t) = trace {
        t.command(app, &cmd);
    }
    match cmd {
        Cmd::Worker(r @ Request::Prefetch { .. }) => *prefetch = Some(r),
        other => run_cmd(other, worker, tx, saves),
    }
}

fn run_cmd(cmd: Cmd, worker: &Worker, tx: &Sender<Msg>, saves: &mut Vec<JoinHandle<()>>) {
    match cmd {
        Cmd::Worker(r) => worker.send(r),
        Cmd::Save { image, path } => {
            let tx = tx.clone();
            saves.retain(|s| !s.is_finished());
            saves.push(std::thread::spawn(move || {
                let r = render::png::write_png_new(&image, &path).map_err(|e| e.to_string());
                let _ = tx.send(Msg::Saved(r));
            }));
        }
    }
}

/// The listing thread: sends the images in chunks, and hands the complete list to the scan
/// (when there is one) before it ends.
fn spawn_lister(mut scan: Scan, tx: Sender<Msg>, starter: Option<ScanStarter>) {
    std::thread::Builder::new()
        .name("camscope-listing".into())
        .spawn(move || {
            let mut chunk = FIRST_CHUNK;
            let mut all = Vec::new();
            loop {
                let paths = scan.next_chunk(chunk);
                chunk = LIST_CHUNK;
                if starter.is_some() {
                    all.extend_from_slice(&paths);
                }
                let done = scan.is_done();
                let skipped = done.then(|| scan.stats().skipped_summary());
                if tx.send(Msg::Listed { paths, done, skipped }).is_err()
                    || starter.as_ref().is_some_and(|s| s.cancelled())
                {
                    return;
                }
                if done {
                    break;
                }
            }
            if let Some(s) = starter {
                s.start(all, tx, Msg::Scan);
            }
        })
        .expect("spawn the listing thread");
}

/// The input thread. Keys typed during the terminal probe come first; answers to it that
/// arrive late are consumed (never seen as keys) before crossterm reads events, and a resize
/// meanwhile is reported once it is done.
fn spawn_input(tx: Sender<Msg>, early: Vec<probe::Key>, late: Option<probe::Late>) {
    std::thread::Builder::new()
        .name("camscope-input".into())
        .spawn(move || {
            let send_key = |k: probe::Key| {
                let _ = tx.send(Msg::Key(probe_key(k)));
            };
            early.into_iter().for_each(send_key);
            if let Some(late) = late {
                let before = crossterm::terminal::size().ok();
                let (answers, after) = late.drain(send_key, terminal::quit_requested);
                if answers.complete {
                    let _ = tx.send(Msg::Answers(Box::new(answers), after));
                }
                if let Ok((w, h)) = crossterm::terminal::size() {
                    if before != Some((w, h)) {
                        let _ = tx.send(Msg::Resize(w, h));
                    }
                }
            }
            loop {
                if terminal::quit_requested() {
                    let _ = tx.send(Msg::Quit);
                    return;
                }
                let msg = match event::poll(Duration::from_millis(100)) {
                    Ok(false) => continue,
                    Ok(true) => match event::read() {
                        Ok(Event::Key(k)) => Msg::Key(k),
                        Ok(Event::Mouse(m)) => Msg::Mouse(m),
                        Ok(Event::Resize(w, h)) => Msg::Resize(w, h),
                        Ok(_) => continue,
                        Err(_) => Msg::Quit,
                    },
                    Err(_) => Msg::Quit,
                };
                if tx.send(msg).is_err() {
                    return;
                }
            }
        })
        .expect("spawn the input thread");
}

fn probe_key(k: probe::Key) -> event::KeyEvent {
    use event::{KeyCode, KeyModifiers};
    let code = match k {
        probe::Key::Char(c) => KeyCode::Char(c),
        probe::Key::Enter => KeyCode::Enter,
        probe::Key::Esc => KeyCode::Esc,
        probe::Key::Tab => KeyCode::Tab,
        probe::Key::Backspace => KeyCode::Backspace,
        probe::Key::Up => KeyCode::Up,
        probe::Key::Down => KeyCode::Down,
        probe::Key::Left => KeyCode::Left,
        probe::Key::Right => KeyCode::Right,
    };
    event::KeyEvent::new(code, KeyModifiers::NONE)
}

/// `--trace`: one JSON object per line. `key` for each key press; `shown` when the frame
/// answering a request (a new image or a new map) has been drawn, with the latency from the
/// event that caused it; `exit` with the process's peak memory.
struct Trace {
    path: PathBuf,
    out: BufWriter<File>,
    t0: Instant,
    /// Requests not yet on screen: serial -> (when the event arrived, what it was).
    pending: HashMap<u64, (Instant, &'static str)>,
    /// Serials whose image was already cached when loaded.
    cached: HashMap<u64, bool>,
    event_at: Instant,
    /// Whether the first frame has been recorded.
    first_frame: bool,
    /// How images are drawn and why (the status bar's words), for the first frame's record.
    graphics: String,
}

impl Trace {
    fn create(path: &Path) -> Result<Self, TuiError> {
        let file = File::create(path).map_err(|source| TuiError::Trace { path: path.to_owned(), source })?;
        let now = Instant::now();
        Ok(Self {
            path: path.to_owned(),
            out: BufWriter::new(file),
            t0: now,
            pending: HashMap::new(),
            cached: HashMap::new(),
            event_at: now,
            first_frame: false,
            graphics: String::new(),
        })
    }

    fn write(&mut self, fields: &[(&str, Field)]) {
        let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        let _ = writeln!(self.out, "{{{}}}", body.join(","));
    }

    fn ms(&self, t: Instant) -> f64 {
        t.duration_since(self.t0).as_secs_f64() * 1e3
    }

    /// The renderer changed after the first frame (late answers).
    fn graphics(&mut self, note: &str) {
        let now = self.ms(Instant::now());
        self.write(&[
            ("ev", Field::Str("graphics".into())),
            ("t_ms", Field::Num(now)),
            ("graphics", Field::Str(note.to_owned())),
        ]);
        let _ = self.out.flush();
    }

    fn message(&mut self, msg: &Msg) {
        match msg {
            Msg::Key(k) => {
                self.event_at = Instant::now();
                let t = self.ms(self.event_at);
                self.write(&[
                    ("ev", Field::Str("key".into())),
                    ("t_ms", Field::Num(t)),
                    ("key", Field::Str(format!("{:?}", k.code))),
                ]);
            }
            Msg::Mouse(_) | Msg::Resize(..) | Msg::Listed { .. } => self.event_at = Instant::now(),
            Msg::Worker(Response::Loaded { serial, cached, .. }) => {
                self.cached.insert(*serial, *cached);
            }
            _ => {}
        }
    }

    fn command(&mut self, app: &App, cmd: &Cmd) {
        if let Cmd::Worker(Request::Show { serial, .. }) = cmd {
            let kind = if app.current.as_ref().is_some_and(|c| c.serial == *serial) { "image" } else { "map" };
            self.pending.insert(*serial, (self.event_at, kind));
        }
    }

    fn frame(&mut self, app: &App) {
        if !self.first_frame {
            // What the user sees at once: with recorded results, every result and the
            // summary's figures are there in this frame, and `scanned` stays 0 (no rescan).
            self.first_frame = true;
            let now = self.ms(Instant::now());
            let p = &app.triage.progress;
            let state = match &app.triage.state {
                triage::ScanState::Recorded { .. } => "recorded",
                triage::ScanState::Off => "off",
                triage::ScanState::Waiting => "waiting",
                triage::ScanState::NoTruth => "no-truth",
                triage::ScanState::Scanning => "scanning",
                triage::ScanState::Done { .. } => "done",
                triage::ScanState::Failed(_) => "failed",
            };
            self.write(&[
                ("ev", Field::Str("first_frame".into())),
                ("t_ms", Field::Num(now)),
                ("triage", Field::Str(state.into())),
                ("images", Field::Int(Some(app.files.entries.len() as u64))),
                ("results", Field::Int(Some(app.triage.results.len() as u64))),
                ("scanned", Field::Int(Some((p.computed + p.cached) as u64))),
                ("graphics", Field::Str(self.graphics.clone())),
            ]);
            // Readable while the inspector runs (the terminal tests wait for it).
            let _ = self.out.flush();
        }
        let Some(serial) = app.shown_serial() else { return };
        let Some((at, kind)) = self.pending.remove(&serial) else { return };
        let image_serial = app.current.as_ref().map_or(serial, |c| c.serial);
        let cached = self.cached.get(&serial).or_else(|| self.cached.get(&image_serial)).copied();
        let t = app.current.as_ref().and_then(|c| c.map.as_ref()).map(|m| m.timings).unwrap_or_default();
        let now = self.ms(Instant::now());
        self.write(&[
            ("ev", Field::Str("shown".into())),
            ("t_ms", Field::Num(now)),
            ("kind", Field::Str(kind.into())),
            ("serial", Field::Int(Some(serial))),
            ("cached", cached.map_or(Field::Int(None), Field::Bool)),
            ("latency_ms", Field::Num(at.elapsed().as_secs_f64() * 1e3)),
            ("frame_ms", Field::Num(app.frame_ms)),
            ("compose_ms", Field::Num(app.picture.as_ref().map_or(0.0, |p| p.compose_ms))),
            ("decode_ms", Field::Num(t.decode_ms)),
            ("body_ms", Field::Num(t.body_ms)),
            ("head_ms", Field::Num(t.head_ms)),
            ("map_ms", Field::Num(t.map_ms)),
            ("vm_rss_kb", Field::Int(proc_status_kb("VmRSS"))),
        ]);
        // Older requests can no longer be shown.
        self.pending.retain(|&s, _| s > serial);
        let _ = self.out.flush();
    }

    /// `scanned`: images the background scan gave a result for (0 with recorded results).
    fn exit(&mut self, scanned: usize) {
        let now = self.ms(Instant::now());
        self.write(&[
            ("ev", Field::Str("exit".into())),
            ("t_ms", Field::Num(now)),
            ("scanned", Field::Int(Some(scanned as u64))),
            ("vm_rss_kb", Field::Int(proc_status_kb("VmRSS"))),
            ("vm_hwm_kb", Field::Int(proc_status_kb("VmHWM"))),
        ]);
        if let Err(e) = self.out.flush() {
            eprintln!("camscope: warning: {}: trace not complete: {e}", self.path.display());
        }
    }
}

/// A JSON value of the trace (the library does without a JSON dependency).
enum Field {
    Str(String),
    Num(f64),
    Int(Option<u64>),
    Bool(bool),
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Field::Bool(b) => write!(f, "{b}"),
            Field::Str(s) => {
                f.write_str("\"")?;
                for ch in s.chars() {
                    match ch {
                        '"' => f.write_str("\\\"")?,
                        '\\' => f.write_str("\\\\")?,
                        c if (c as u32) < 0x20 => write!(f, "\\u{:04x}", c as u32)?,
                        c => write!(f, "{c}")?,
                    }
                }
                f.write_str("\"")
            }
            Field::Num(v) if v.is_finite() => write!(f, "{v:.3}"),
            Field::Num(_) | Field::Int(None) => f.write_str("null"),
            Field::Int(Some(v)) => write!(f, "{v}"),
        }
    }
}

/// A `kB` field of `/proc/self/status` (Linux), e.g. `VmRSS`, `VmHWM`.
pub fn proc_status_kb(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    line[field.len() + 1..].trim().trim_end_matches("kB").trim().parse().ok()
}
