//! Events in, new state and commands out: the inspector's behaviour as one pure function.
//!
//! [`update`] takes a [`Msg`] (a key, a mouse event, a resize, an answer from the worker, a
//! chunk of the listing) and changes the [`App`]; what must happen outside (ask the worker,
//! write a file, quit) comes back as [`Cmd`]s for the run loop. No I/O, no clock except the
//! compose timing shown in the status bar.
//!
//! Stale answers: every request to the worker carries a fresh serial. A map is shown only if it
//! answers the latest request ([`App::map_serial`]); body results only if they are for the
//! selected image. Anything else still fills in the file list's predictions, and is dropped.
//!
//! Triage: the scan thread's results arrive as [`Msg::Scan`]; they fill the file list at once,
//! while what is costlier (the filtered and sorted order, the summary) is redone once per
//! frame by [`settle`], however many messages the frame drained.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crossterm::event::{KeyEvent, KeyEventKind, MouseEvent};
use image::RgbImage;
use ratatui::layout::Rect;

use crate::cam::{MapStatus, Method};
use crate::dataset::stats::Filter;
use crate::grad::ScoreKind;
use crate::render::{self, Colormap};

use super::keys::Action;
use super::recorded::{Missing, Recorded, missing_message};
use super::scanner::ScanEvent;
use super::state::{App, Caption, Current, Focus, Picture, Popup, Search, ShownMap, SummaryPopup, ViewMode};
use super::triage::{self, ScanState, SummaryItem};
use super::view;
use super::worker::{Request, Response};

mod input;
mod picture;

use self::input::{key, mouse};
use self::picture::save;
pub use self::picture::{compose, save_name};

/// How many neighbours of the selected image are prefetched on each side.
pub const PREFETCH_RADIUS: usize = 2;
/// Classes listed by the search popup.
pub const SEARCH_LIMIT: usize = 200;
/// Alpha step of `+`/`-`.
pub const ALPHA_STEP: f64 = 0.1;
/// Lines per class in the classes pane (label line, bar line).
pub const CLASS_LINES: u16 = 2;

/// Everything the inspector reacts to.
#[derive(Debug, Clone)]
pub enum Msg {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Resize(u16, u16),
    Worker(Response),
    /// More images listed; `done` once the scan has finished (with what it skipped).
    Listed {
        paths: Vec<PathBuf>,
        done: bool,
        skipped: Option<String>,
    },
    /// The listing stopped with an error.
    ListingFailed(String),
    /// A save finished: the path written, or why not.
    Saved(Result<PathBuf, String>),
    /// News from the background scan.
    Scan(ScanEvent),
    /// Recorded results (`camscope OUT`): the whole listing, truth and results at once.
    Recorded(Box<Recorded>),
    /// Which recorded images are not under the root.
    Missing(Missing),
    /// The terminal's answers to the graphics queries, in after the first frame (a slow
    /// link), with how long they took: the run loop chooses the renderer again.
    Answers(Box<super::probe::Answers>, std::time::Duration),
    /// A signal asked to quit.
    Quit,
}

/// What the run loop must do for the state.
#[derive(Debug, Clone)]
pub enum Cmd {
    Worker(Request),
    /// Write `image` as a new PNG at `path` (or the next free name beside it).
    Save {
        image: Arc<RgbImage>,
        path: PathBuf,
    },
}

/// Apply one message.
pub fn update(app: &mut App, msg: Msg) -> Vec<Cmd> {
    let mut cmds = Vec::new();
    match msg {
        Msg::Key(k) if k.kind != KeyEventKind::Release => key(app, k, &mut cmds),
        Msg::Key(_) => {}
        Msg::Mouse(m) => mouse(app, m, &mut cmds),
        Msg::Resize(w, h) => {
            app.size = (w, h);
            scroll_to_cursor(app);
        }
        Msg::Worker(r) => worker(app, r, &mut cmds),
        Msg::Listed { paths, done, skipped } => {
            let root = app.settings.root.clone();
            app.files.extend(&root, paths);
            if app.triage.custom_order() {
                app.triage.order_stale = true;
            }
            app.files.done = done;
            if done {
                app.files.skipped = skipped;
            }
            if app.current.is_none() && !app.files.is_empty() {
                select(app, app.files.cursor, &mut cmds);
            }
        }
        Msg::ListingFailed(e) => {
            app.files.done = true;
            app.message = Some(e);
        }
        Msg::Saved(Ok(path)) => app.message = Some(format!("saved {}", path.display())),
        Msg::Saved(Err(e)) => app.message = Some(format!("not saved: {e}")),
        Msg::Scan(e) => scan_event(app, e),
        Msg::Recorded(r) => recorded(app, *r, &mut cmds),
        Msg::Missing(m) => {
            for &i in &m.indices {
                if let Some(e) = app.files.entries.get_mut(i) {
                    e.missing = true;
                }
            }
            app.triage.progress.missing = m.indices.len();
            app.triage.summary = None;
            if let Some(line) = missing_message(&m, &app.settings.root) {
                app.message = Some(line);
            }
        }
        // The run loop chooses the renderer again: it owns the image view, not the state.
        Msg::Answers(..) => {}
        Msg::Quit => app.quit = true,
    }
    cmds
}

/// Once per frame, after the messages of the frame: rebuild the file list's order if new
/// results or images changed it, and the summary if the summary view shows it.
pub fn settle(app: &mut App) -> Vec<Cmd> {
    let mut cmds = Vec::new();
    if app.triage.order_stale {
        apply_order(app, &mut cmds);
    }
    if matches!(app.popup, Popup::Summary(_)) {
        app.triage.summary();
    }
    cmds
}

fn scan_event(app: &mut App, e: ScanEvent) {
    let t = &mut app.triage;
    match e {
        ScanEvent::Truth { truths, headline, notes } => {
            for (entry, truth) in app.files.entries.iter_mut().zip(truths) {
                entry.truth = truth;
            }
            t.state = ScanState::Scanning;
            t.progress.total = app.files.entries.len();
            t.notes = notes;
            if headline.is_some() {
                app.message = headline;
            }
        }
        ScanEvent::NoTruth { reason, notes } => {
            t.state = ScanState::NoTruth;
            t.notes = notes;
            if let Some(reason) = reason {
                app.message = Some(format!("no ground truth: {reason}; check the paths in the CSV"));
            }
        }
        ScanEvent::Progress { results, unreadable, computed, cached, rate } => {
            for (index, result) in results {
                t.insert(&mut app.files.entries, index, result);
            }
            for (index, error, fault) in unreadable {
                if let Some(e) = app.files.entries.get_mut(index).filter(|e| e.error.is_none()) {
                    (e.error, e.fault) = (Some(error), fault);
                }
            }
            t.progress.count_failures(&app.files.entries);
            t.progress.computed = computed;
            t.progress.cached = cached;
            t.progress.rate = rate.or(t.progress.rate);
        }
        ScanEvent::Finished { seconds, note } => {
            t.state = ScanState::Done { seconds };
            if let Some(n) = note {
                app.message = Some(n.clone());
                t.notes.push(n);
            }
        }
        ScanEvent::Failed(e) => {
            app.message = Some(format!("scan stopped: {e}"));
            t.state = ScanState::Failed(e);
        }
    }
}

/// Recorded results: list every image, set its truth and result, and select the first, in
/// one step (the first frame already shows the summary's figures).
fn recorded(app: &mut App, r: Recorded, cmds: &mut Vec<Cmd>) {
    let root = app.settings.root.clone();
    let total = r.images.len();
    app.files.extend(&root, r.images);
    app.files.done = true;
    for (entry, truth) in app.files.entries.iter_mut().zip(r.truths) {
        entry.truth = truth;
    }
    let t = &mut app.triage;
    t.state = ScanState::Recorded { source: r.source };
    t.progress.total = total;
    t.notes = r.notes;
    for (index, result) in r.results {
        t.insert(&mut app.files.entries, index, result);
    }
    for (index, error, fault) in r.unreadable {
        if let Some(e) = app.files.entries.get_mut(index).filter(|e| e.error.is_none()) {
            (e.error, e.fault) = (Some(error), fault);
        }
    }
    t.progress.count_failures(&app.files.entries);
    if r.message.is_some() {
        app.message = r.message;
    }
    if app.current.is_none() && !app.files.is_empty() {
        select(app, app.files.cursor, cmds);
    }
}

/// Rebuild the visible order for the triage's filter and sort, keeping the selected image
/// when it is still visible (else the first row is selected).
fn apply_order(app: &mut App, cmds: &mut Vec<Cmd>) {
    let order = triage::visible_order(&app.files, &app.triage);
    app.files.set_order(order);
    app.triage.order_stale = false;
    if app.files.is_empty() {
        app.files.offset = 0;
    } else {
        select(app, app.files.cursor, cmds);
    }
}

/// Why the triage keys do nothing yet, if they do not.
fn triage_unavailable(app: &App) -> Option<String> {
    match &app.triage.state {
        ScanState::Off => Some("triage needs a folder of images with ground truth".into()),
        ScanState::Waiting => Some("triage starts when the listing is complete".into()),
        ScanState::NoTruth => Some("no ground truth: name folders after classes, or give --labels FILE.csv".into()),
        _ => None,
    }
}

/// Why the compare view cannot show the current image, if it cannot.
fn compare_unavailable(app: &App) -> Option<String> {
    if let Some(why) = triage_unavailable(app) {
        return Some(format!("compare: {why}"));
    }
    let Some(entry) = app.current_entry() else { return Some("compare: no image selected".into()) };
    let Some(truth) = entry.truth else { return Some("compare: this image has no ground truth".into()) };
    match app.current_prediction() {
        None => Some("compare: the prediction is not known yet".into()),
        Some(p) if p == truth => Some("compare: this image is classified correctly (n: next mistake)".into()),
        Some(_) => None,
    }
}

/// Switch the image pane's mode; the compare view asks the worker for its maps if the map on
/// screen lacks them.
fn set_view(app: &mut App, view: ViewMode, cmds: &mut Vec<Cmd>) {
    app.view = view;
    if compare_versus(app) != app.map_versus {
        request_map(app, cmds);
    }
    compose(app);
}

/// The true class a map request should compare against: in the compare view, for a mistake.
fn compare_versus(app: &App) -> Option<usize> {
    if app.view == ViewMode::Compare { app.compare_truth() } else { None }
}

fn page(app: &App) -> usize {
    files_height(app).saturating_sub(1).max(1)
}

fn files_height(app: &App) -> usize {
    view::layout(Rect::new(0, 0, app.size.0, app.size.1)).map_or(1, |p| usize::from(view::inner(p.files).height))
}

/// Move the focused list by `delta` rows (clamped).
fn step(app: &mut App, delta: isize, cmds: &mut Vec<Cmd>) {
    match app.focus {
        Focus::Files => {
            if app.files.is_empty() {
                return;
            }
            let pos = (app.files.cursor as isize).saturating_add(delta).clamp(0, app.files.len() as isize - 1);
            select(app, pos as usize, cmds);
        }
        Focus::Classes => step_class(app, delta.clamp(-1000, 1000), cmds),
    }
}

fn step_class(app: &mut App, delta: isize, cmds: &mut Vec<Cmd>) {
    let rows = app.class_rows();
    if rows.is_empty() {
        return;
    }
    let at = app.highlighted_class().and_then(|c| rows.iter().position(|p| p.index == c)).unwrap_or(0);
    let to = (at as isize + delta).clamp(0, rows.len() as isize - 1) as usize;
    if to != at || app.target.is_none() {
        set_target(app, rows[to].index, cmds);
    }
}

/// Select row `pos` of the file list: ask for its image and prefetch its neighbours.
pub fn select(app: &mut App, pos: usize, cmds: &mut Vec<Cmd>) {
    app.files.cursor = pos;
    scroll_to_cursor(app);
    let Some(entry) = app.files.selected() else { return };
    let path = entry.path.clone();
    if app.current.as_ref().is_some_and(|c| c.path == path) {
        return;
    }
    let serial = app.next_serial();
    app.current = Some(Current::new(path.clone(), serial));
    app.map_serial = serial;
    app.target = None;
    app.picture = None;
    let versus = compare_versus(app);
    app.map_versus = versus;
    cmds.push(Cmd::Worker(Request::Show { serial, path, class: None, method: app.method, versus }));
    cmds.push(Cmd::Worker(Request::Prefetch { paths: app.files.neighbours(PREFETCH_RADIUS) }));
}

fn scroll_to_cursor(app: &mut App) {
    let h = files_height(app).max(1);
    let f = &mut app.files;
    if f.cursor < f.offset {
        f.offset = f.cursor;
    } else if f.cursor >= f.offset + h {
        f.offset = f.cursor + 1 - h;
    }
    f.offset = f.offset.min(f.len().saturating_sub(h));
}

/// Explain `class` for the selected image.
pub fn set_target(app: &mut App, class: usize, cmds: &mut Vec<Cmd>) {
    app.target = Some(class);
    request_map(app, cmds);
}

fn set_method(app: &mut App, method: Method, cmds: &mut Vec<Cmd>) {
    app.method = method;
    request_map(app, cmds);
}

/// Ask for the map of the current image, target and method (a fresh serial: older answers
/// become stale).
fn request_map(app: &mut App, cmds: &mut Vec<Cmd>) {
    let Some(path) = app.current.as_ref().map(|c| c.path.clone()) else { return };
    let serial = app.next_serial();
    app.map_serial = serial;
    let versus = compare_versus(app);
    app.map_versus = versus;
    if let Some(c) = &mut app.current {
        c.error = None;
    }
    cmds.push(Cmd::Worker(Request::Show { serial, path, class: app.target, method: app.method, versus }));
}

fn set_alpha(app: &mut App, alpha: f64) {
    app.alpha = (alpha.clamp(0.0, 1.0) * 10.0).round() / 10.0;
    compose(app);
}

fn cycle<T: Copy + PartialEq>(all: &[T], now: T, delta: isize) -> T {
    let i = all.iter().position(|&x| x == now).unwrap_or(0) as isize;
    all[(i + delta).rem_euclid(all.len() as isize) as usize]
}

fn worker(app: &mut App, r: Response, cmds: &mut Vec<Cmd>) {
    match r {
        Response::Loaded { serial, path, loaded, cached, cache } => {
            app.cache = cache;
            let class = loaded.scores.argmax();
            if let Some(e) = app.files.entry_mut(&path) {
                e.prediction = Some((class, loaded.scores.probabilities[class]));
                e.error = None;
            }
            let k = app.settings.top_k;
            let labels = app.info.labels.clone();
            if let Some(c) = app.current.as_mut().filter(|c| c.path == path && serial >= c.serial) {
                // A class or method switch reloads the same (cached) results: nothing to redraw.
                if c.loaded.as_ref().is_some_and(|l| Arc::ptr_eq(l, &loaded)) {
                    return;
                }
                c.top = loaded.scores.top_k(k, &labels);
                if !loaded.warnings.is_empty() {
                    // A truncated file accepted with --allow-truncated: its scores may be wrong.
                    app.message = Some(format!("warning: {}", loaded.warnings.join("; ")));
                }
                c.loaded = Some(loaded);
                c.cached = cached;
                // Now the prediction is known: the compare view may need (or not need) its maps.
                if compare_versus(app) != app.map_versus {
                    request_map(app, cmds);
                }
                compose(app);
            }
        }
        Response::Map { serial, path, class, method, map, status, timings, compare, cache } => {
            app.cache = cache;
            if serial != app.map_serial || app.current.as_ref().is_none_or(|c| c.path != path) {
                return;
            }
            app.target = Some(class);
            if let Some(c) = &mut app.current {
                c.map = Some(ShownMap { serial, class, method, map, status, timings, compare });
            }
            compose(app);
        }
        Response::Failed { serial, path, error, fault } => {
            if let Some(e) = app.files.entry_mut(&path) {
                (e.error, e.fault) = (Some(error.clone()), fault);
            }
            let current = app.current.as_mut().filter(|c| c.path == path && serial.is_none_or(|s| s >= c.serial));
            if let Some(c) = current {
                c.error = Some(error);
            }
        }
        Response::Predicted { path, class, probability, cache } => {
            app.cache = cache;
            if let Some(e) = app.files.entry_mut(&path) {
                e.prediction = Some((class, probability));
                e.error = None;
            }
        }
        Response::LayerSet { result } => match result {
            Ok(layer) => {
                app.message = Some(format!("layer {} {}", layer.tensor, layer.shape));
                app.info.layer = layer;
                app.cache = (0, 0);
            }
            Err(e) => app.message = Some(format!("layer not changed: {e}")),
        },
        Response::ScoreSet { result } => match result {
            Ok(score) => app.info.score = score,
            Err(e) => app.message = Some(format!("score not changed: {e}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::Fault;
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};

    use super::super::testing::*;
    use super::*;

    #[test]
    fn the_first_listed_image_is_shown_and_its_neighbours_prefetched() {
        let mut a = app();
        let cmds =
            update(&mut a, Msg::Listed { paths: vec![path("a.png"), path("b.png")], done: false, skipped: None });
        assert_eq!(shows(&cmds), vec![(1, "a.png".into(), None)]);
        assert!(
            cmds.iter().any(|c| matches!(c, Cmd::Worker(Request::Prefetch { paths }) if paths == &vec![path("b.png")]))
        );
        assert_eq!(a.files.entries[0].name, "a.png");
        assert!(!a.files.done);
        // More of the listing does not change the selection.
        let cmds = update(&mut a, Msg::Listed { paths: vec![path("c.png")], done: true, skipped: None });
        assert!(cmds.is_empty());
        assert_eq!((a.files.len(), a.files.cursor, a.files.done), (3, 0, true));
    }

    /// A truncated file accepted with --allow-truncated: the inspector says so when it is shown.
    #[test]
    fn a_decoder_warning_of_the_shown_image_reaches_the_status_bar() {
        let mut a = listed(&["a.png"]);
        let mut l = (*loaded("a.png", [1, 2, 3])).clone();
        l.warnings = vec!["a.png: truncated JPEG, used anyway".into()];
        update(
            &mut a,
            Msg::Worker(Response::Loaded {
                serial: 1,
                path: path("a.png"),
                loaded: Arc::new(l),
                cached: false,
                cache: (1, 1),
            }),
        );
        assert_eq!(a.message.as_deref(), Some("warning: a.png: truncated JPEG, used anyway"));
    }

    /// The map's answer carries the caches as they are after it (its head result and tape are
    /// in them), so the status bar's figure does not lag one image behind.
    #[test]
    fn a_map_answer_updates_the_cache_figure() {
        let mut a = listed(&["a.png"]);
        update(&mut a, loaded_msg(1, "a.png"));
        let Msg::Worker(Response::Map { serial, path, class, method, map, status, timings, compare, .. }) =
            map_msg(1, "a.png", 0, 0)
        else {
            unreachable!()
        };
        let cache = (1, 9 << 20);
        let msg = Response::Map { serial, path, class, method, map, status, timings, compare, cache };
        update(&mut a, Msg::Worker(msg));
        assert_eq!(a.cache, cache);
    }

    #[test]
    fn down_moves_to_the_next_image_with_a_fresh_serial() {
        let mut a = listed(&["a.png", "b.png", "c.png", "d.png"]);
        let cmds = update(&mut a, ch('j'));
        assert_eq!(shows(&cmds), vec![(2, "b.png".into(), None)]);
        let prefetch = cmds.iter().find_map(|c| match c {
            Cmd::Worker(Request::Prefetch { paths }) => Some(paths.clone()),
            _ => None,
        });
        assert_eq!(prefetch, Some(vec![path("c.png"), path("a.png"), path("d.png")]), "nearest first");
        assert_eq!(a.current.as_ref().unwrap().path, path("b.png"));
        update(&mut a, press(KeyCode::Down));
        update(&mut a, press(KeyCode::End));
        assert_eq!(a.files.cursor, 3);
        update(&mut a, ch('g'));
        assert_eq!(a.files.cursor, 0);
        // At the top, up stays and asks for nothing new.
        assert!(shows(&update(&mut a, ch('k'))).is_empty());
    }

    #[test]
    fn answers_for_an_image_the_user_left_are_dropped_but_fill_the_list() {
        let mut a = listed(&["a.png", "b.png"]);
        update(&mut a, ch('j')); // b.png, serial 2
        update(&mut a, loaded_msg(1, "a.png"));
        update(&mut a, map_msg(1, "a.png", 9, 0));
        let cur = a.current.as_ref().unwrap();
        assert_eq!(cur.path, path("b.png"));
        assert!(cur.loaded.is_none() && cur.map.is_none() && a.picture.is_none());
        assert_eq!(a.files.entries[0].prediction.map(|p| p.0), Some(9), "the stale result still predicts a.png");
        // b's own answers are shown.
        update(&mut a, loaded_msg(2, "b.png"));
        update(&mut a, map_msg(2, "b.png", 9, 0));
        assert_eq!(a.shown_serial(), Some(2));
        assert!(a.picture.is_some() && !a.computing());
        assert_eq!(a.current.as_ref().unwrap().top.iter().map(|p| p.index).collect::<Vec<_>>(), vec![9, 8, 7]);
    }

    #[test]
    fn switching_class_asks_for_a_new_map_and_drops_the_older_one() {
        let mut a = listed(&["a.png"]);
        update(&mut a, loaded_msg(1, "a.png"));
        update(&mut a, map_msg(1, "a.png", 9, 0));
        assert_eq!(a.highlighted_class(), Some(9));
        update(&mut a, press(KeyCode::Tab));
        assert_eq!(a.focus, Focus::Classes);
        let first = shows(&update(&mut a, ch('j')));
        assert_eq!(first, vec![(2, "a.png".into(), Some(8))]);
        assert_eq!(a.highlighted_class(), Some(8), "the highlight follows at once");
        assert!(a.computing());
        let second = shows(&update(&mut a, press(KeyCode::Down)));
        assert_eq!(second, vec![(3, "a.png".into(), Some(7))]);
        // The answer to serial 2 arrives late: dropped; the old map stays on screen meanwhile.
        let before = a.picture.as_ref().unwrap().id;
        update(&mut a, map_msg(2, "a.png", 8, 1));
        assert_eq!(a.current.as_ref().unwrap().map.as_ref().unwrap().serial, 1);
        assert_eq!(a.picture.as_ref().unwrap().id, before);
        update(&mut a, map_msg(3, "a.png", 7, 3));
        assert_eq!(a.shown_serial(), Some(3));
        assert_eq!(a.target, Some(7));
        assert_ne!(a.picture.as_ref().unwrap().id, before);
        // Past the last row nothing changes.
        assert!(shows(&update(&mut a, ch('j'))).is_empty());
    }

    #[test]
    fn search_targets_a_class_outside_the_top_k() {
        let mut a = listed(&["a.png"]);
        update(&mut a, loaded_msg(1, "a.png"));
        update(&mut a, ch('/'));
        assert!(matches!(&a.popup, Popup::Search(s) if s.hits.len() == CLASSES), "empty query lists all");
        for c in "class 2".chars() {
            update(&mut a, ch(c));
        }
        let Popup::Search(s) = &a.popup else { panic!("search stays open while typing") };
        assert_eq!(s.hits[0].0, 2);
        let cmds = update(&mut a, press(KeyCode::Enter));
        assert_eq!(shows(&cmds), vec![(2, "a.png".into(), Some(2))]);
        assert_eq!(a.popup, Popup::None);
        let rows: Vec<usize> = a.class_rows().iter().map(|p| p.index).collect();
        assert_eq!(rows, vec![9, 8, 7, 2], "the searched class is listed after the top-k");
        // Esc closes without changing the target; typing `q` in the search is text, not quit.
        update(&mut a, ch('/'));
        update(&mut a, ch('q'));
        assert!(!a.quit);
        update(&mut a, press(KeyCode::Esc));
        assert_eq!((a.popup.clone(), a.target), (Popup::None, Some(2)));
    }

    #[test]
    fn display_keys_recompose_without_asking_the_worker() {
        let mut a = listed(&["a.png"]);
        update(&mut a, loaded_msg(1, "a.png"));
        update(&mut a, map_msg(1, "a.png", 9, 0));
        let id = a.picture.as_ref().unwrap().id;
        assert!(update(&mut a, ch('v')).is_empty());
        assert_eq!(a.view, ViewMode::Heatmap);
        update(&mut a, ch('v'));
        update(&mut a, ch('v'));
        assert_eq!(a.view, ViewMode::SideBySide);
        assert_eq!(a.picture.as_ref().unwrap().images.len(), 2);
        update(&mut a, ch('v'));
        assert_eq!(a.view, ViewMode::Overlay);
        update(&mut a, ch('c'));
        assert_eq!(a.colormap, Colormap::Turbo);
        for _ in 0..8 {
            update(&mut a, ch('+'));
        }
        assert_eq!(a.alpha, 1.0);
        update(&mut a, ch('-'));
        assert_eq!(a.alpha, 0.9);
        assert!(a.picture.as_ref().unwrap().id > id);
    }

    #[test]
    fn method_layer_and_score_changes_go_to_the_worker() {
        let mut a = listed(&["a.png"]);
        update(&mut a, loaded_msg(1, "a.png"));
        let cmds = update(&mut a, ch('m'));
        assert_eq!(a.method, Method::GradCamPlusPlus);
        assert_eq!(shows(&cmds).len(), 1);
        update(&mut a, ch('M'));
        update(&mut a, ch('M'));
        assert_eq!(a.method, Method::GuidedGradCam, "M cycles backwards");
        update(&mut a, ch('L'));
        assert_eq!(a.popup, Popup::Layers(super::super::state::LayerPicker { cursor: 1, offset: 0 }));
        update(&mut a, ch('k'));
        let cmds = update(&mut a, press(KeyCode::Enter));
        assert!(matches!(&cmds[0], Cmd::Worker(Request::SetLayer { tensor }) if tensor == "stem"));
        assert_eq!(shows(&cmds).len(), 1, "the current image is explained again at the new layer");
        update(&mut a, Msg::Worker(Response::LayerSet { result: Ok(layer("stem", false)) }));
        assert_eq!(a.info.layer.tensor, "stem");
        let cmds = update(&mut a, ch('p'));
        assert!(matches!(cmds[0], Cmd::Worker(Request::SetScore { score: ScoreKind::Prob })));
        update(&mut a, Msg::Worker(Response::ScoreSet { result: Ok(ScoreKind::Prob) }));
        assert_eq!(a.info.score, ScoreKind::Prob);
    }

    #[test]
    fn an_unreadable_image_shows_its_error_and_browsing_goes_on() {
        let mut a = listed(&["bad.png", "b.png"]);
        update(
            &mut a,
            Msg::Worker(Response::Failed {
                serial: Some(1),
                path: path("bad.png"),
                error: "corrupt".into(),
                fault: Fault::Unreadable,
            }),
        );
        assert_eq!(a.current.as_ref().unwrap().error.as_deref(), Some("corrupt"));
        assert_eq!(a.files.entries[0].error.as_deref(), Some("corrupt"));
        assert!(!a.computing());
        assert_eq!(shows(&update(&mut a, ch('j'))), vec![(2, "b.png".into(), None)]);
        // A failed prefetch marks its file only.
        update(
            &mut a,
            Msg::Worker(Response::Failed {
                serial: None,
                path: path("b.png"),
                error: "gone".into(),
                fault: Fault::Unreadable,
            }),
        );
        assert_eq!(a.files.entries[1].error.as_deref(), Some("gone"));
    }

    #[test]
    fn save_writes_the_overlay_under_a_descriptive_name() {
        let mut a = listed(&["cat.png"]);
        update(&mut a, ch('s'));
        assert!(a.message.as_deref().unwrap().contains("nothing to save"));
        update(&mut a, loaded_msg(1, "cat.png"));
        update(&mut a, map_msg(1, "cat.png", 9, 0));
        let cmds = update(&mut a, ch('s'));
        match &cmds[..] {
            [Cmd::Save { image, path }] => {
                assert_eq!(path, &PathBuf::from("/out/cat.class_9.gradcam.png"));
                assert_eq!(image.dimensions(), (8, 8));
            }
            other => panic!("expected one save, got {other:?}"),
        }
        update(&mut a, Msg::Saved(Ok(PathBuf::from("/out/cat.class_9.gradcam-1.png"))));
        assert_eq!(a.message.as_deref(), Some("saved /out/cat.class_9.gradcam-1.png"));
        assert_eq!(
            save_name(Path::new("x/Tabby Cat.jpg"), "tiger cat, Panthera", Method::ScoreCam),
            "Tabby Cat.tiger_cat_panthera.scorecam.png"
        );
    }

    #[test]
    fn quit_keys_and_popups() {
        let mut a = listed(&["a.png"]);
        update(&mut a, ch('?'));
        assert_eq!(a.popup, Popup::Help);
        update(&mut a, press(KeyCode::Esc));
        assert_eq!(a.popup, Popup::None, "Esc closes the help first");
        assert!(!a.quit);
        update(&mut a, ch('?'));
        update(&mut a, Msg::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)));
        assert!(a.quit, "Ctrl-C quits from anywhere");
        for m in [ch('q'), press(KeyCode::Esc), Msg::Quit] {
            let mut a = listed(&["a.png"]);
            update(&mut a, m);
            assert!(a.quit);
        }
    }

    #[test]
    fn mouse_clicks_select_files_and_classes() {
        let names: Vec<String> = (0..100).map(|i| format!("{i:03}.png")).collect();
        let mut a = listed(&names.iter().map(String::as_str).collect::<Vec<_>>());
        update(&mut a, loaded_msg(1, "000.png"));
        let panes = view::layout(Rect::new(0, 0, 120, 40)).unwrap();
        let files = view::inner(panes.files);
        let click = |x, y| {
            Msg::Mouse(MouseEvent {
                kind: MouseEventKind::Down(MouseButton::Left),
                column: x,
                row: y,
                modifiers: KeyModifiers::NONE,
            })
        };
        let cmds = update(&mut a, click(files.x + 1, files.y + 4));
        assert_eq!(shows(&cmds), vec![(2, "004.png".into(), None)]);
        update(&mut a, loaded_msg(2, "004.png"));
        let classes = view::inner(panes.classes);
        let cmds = update(&mut a, click(classes.x + 2, classes.y + 2 * CLASS_LINES + 1));
        assert_eq!(shows(&cmds), vec![(3, "004.png".into(), Some(7))], "third class row");
        assert_eq!(a.focus, Focus::Classes);
        // The wheel scrolls the file list without changing the selection.
        let wheel = Msg::Mouse(MouseEvent {
            kind: MouseEventKind::ScrollDown,
            column: files.x + 1,
            row: files.y + 1,
            modifiers: KeyModifiers::NONE,
        });
        update(&mut a, wheel);
        assert_eq!((a.files.offset, a.files.cursor), (3, 4));
    }

    #[test]
    fn the_file_list_scrolls_with_the_cursor() {
        let names: Vec<String> = (0..100).map(|i| format!("{i:03}.png")).collect();
        let mut a = listed(&names.iter().map(String::as_str).collect::<Vec<_>>());
        let h = files_height(&a);
        for _ in 0..h + 5 {
            update(&mut a, ch('j'));
        }
        assert_eq!(a.files.offset, 6);
        update(&mut a, press(KeyCode::PageDown));
        assert_eq!(a.files.cursor, h + 5 + h - 1);
        // A smaller terminal keeps the cursor visible.
        update(&mut a, Msg::Resize(80, 20));
        let h = files_height(&a);
        assert!(a.files.cursor >= a.files.offset && a.files.cursor < a.files.offset + h);
    }
}
