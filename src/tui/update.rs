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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use image::RgbImage;
use ratatui::layout::{Position, Rect};

use crate::cam::Method;
use crate::grad::ScoreKind;
use crate::render::{self, Colormap};

use super::state::{App, Current, Focus, Picture, Popup, Search, ShownMap, ViewMode};
use super::view;
use super::worker::{Request, Response};

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
        Msg::Worker(r) => worker(app, r),
        Msg::Listed { paths, done, skipped } => {
            let root = app.settings.root.clone();
            app.files.extend(&root, paths);
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
        Msg::Quit => app.quit = true,
    }
    cmds
}

fn key(app: &mut App, k: KeyEvent, cmds: &mut Vec<Cmd>) {
    if k.modifiers.contains(KeyModifiers::CONTROL) && matches!(k.code, KeyCode::Char('c' | 'q')) {
        app.quit = true;
        return;
    }
    match &mut app.popup {
        Popup::None => {}
        Popup::Help => {
            app.popup = Popup::None;
            return;
        }
        Popup::Search(_) => return search_key(app, k, cmds),
        Popup::Layers(_) => return layers_key(app, k, cmds),
    }
    match k.code {
        KeyCode::Char('q') | KeyCode::Esc => app.quit = true,
        KeyCode::Char('?') => app.popup = Popup::Help,
        KeyCode::Tab | KeyCode::BackTab | KeyCode::Enter | KeyCode::Char(' ') => {
            app.focus = match app.focus {
                Focus::Files => Focus::Classes,
                Focus::Classes => Focus::Files,
            }
        }
        KeyCode::Left | KeyCode::Char('h') => app.focus = Focus::Files,
        KeyCode::Right | KeyCode::Char('l') => app.focus = Focus::Classes,
        KeyCode::Up | KeyCode::Char('k') => step(app, -1, cmds),
        KeyCode::Down | KeyCode::Char('j') => step(app, 1, cmds),
        KeyCode::PageUp => step(app, -(page(app) as isize), cmds),
        KeyCode::PageDown => step(app, page(app) as isize, cmds),
        KeyCode::Home | KeyCode::Char('g') => step(app, isize::MIN / 2, cmds),
        KeyCode::End | KeyCode::Char('G') => step(app, isize::MAX / 2, cmds),
        KeyCode::Char('m') => set_method(app, cycle(&Method::ALL, app.method, 1), cmds),
        KeyCode::Char('M') => set_method(app, cycle(&Method::ALL, app.method, -1), cmds),
        KeyCode::Char('L') => {
            let cursor = app.info.layers.iter().position(|l| l.tensor == app.info.layer.tensor).unwrap_or(0);
            app.popup = Popup::Layers(super::state::LayerPicker { cursor, offset: 0 });
        }
        KeyCode::Char('v') => {
            app.view = app.view.next();
            compose(app);
        }
        KeyCode::Char('c') => {
            app.colormap = cycle(&Colormap::ALL, app.colormap, 1);
            compose(app);
        }
        KeyCode::Char('+') | KeyCode::Char('=') => set_alpha(app, app.alpha + ALPHA_STEP),
        KeyCode::Char('-') | KeyCode::Char('_') => set_alpha(app, app.alpha - ALPHA_STEP),
        KeyCode::Char('p') => {
            let score = match app.info.score {
                ScoreKind::Logit => ScoreKind::Prob,
                ScoreKind::Prob => ScoreKind::Logit,
            };
            cmds.push(Cmd::Worker(Request::SetScore { score }));
            request_map(app, cmds);
        }
        KeyCode::Char('s') => save(app, cmds),
        KeyCode::Char('/') => {
            let mut s = Search::default();
            refresh_search(app, &mut s);
            app.popup = Popup::Search(s);
        }
        _ => {}
    }
}

fn search_key(app: &mut App, k: KeyEvent, cmds: &mut Vec<Cmd>) {
    let Popup::Search(mut s) = std::mem::replace(&mut app.popup, Popup::None) else { return };
    match k.code {
        KeyCode::Esc => return,
        KeyCode::Enter => {
            if let Some(&(class, _)) = s.hits.get(s.cursor) {
                set_target(app, class, cmds);
                app.focus = Focus::Classes;
            }
            return;
        }
        KeyCode::Up => s.cursor = s.cursor.saturating_sub(1),
        KeyCode::Down => s.cursor = (s.cursor + 1).min(s.hits.len().saturating_sub(1)),
        KeyCode::PageUp => s.cursor = s.cursor.saturating_sub(10),
        KeyCode::PageDown => s.cursor = (s.cursor + 10).min(s.hits.len().saturating_sub(1)),
        KeyCode::Backspace => {
            s.query.pop();
            refresh_search(app, &mut s);
        }
        KeyCode::Char(ch) => {
            s.query.push(ch);
            refresh_search(app, &mut s);
        }
        _ => {}
    }
    app.popup = Popup::Search(s);
}

fn refresh_search(app: &App, s: &mut Search) {
    s.hits = app.info.labels.search(&s.query, SEARCH_LIMIT).into_iter().map(|h| (h.index, h.matched)).collect();
    s.cursor = 0;
}

fn layers_key(app: &mut App, k: KeyEvent, cmds: &mut Vec<Cmd>) {
    let Popup::Layers(mut p) = std::mem::replace(&mut app.popup, Popup::None) else { return };
    let n = app.info.layers.len();
    match k.code {
        KeyCode::Esc | KeyCode::Char('q') | KeyCode::Char('L') => return,
        KeyCode::Enter | KeyCode::Char(' ') => {
            if let Some(l) = app.info.layers.get(p.cursor) {
                if l.tensor != app.info.layer.tensor {
                    cmds.push(Cmd::Worker(Request::SetLayer { tensor: l.tensor.clone() }));
                    app.message = Some(format!("switching to layer {} …", l.tensor));
                    request_map(app, cmds);
                }
            }
            return;
        }
        KeyCode::Up | KeyCode::Char('k') => p.cursor = p.cursor.saturating_sub(1),
        KeyCode::Down | KeyCode::Char('j') => p.cursor = (p.cursor + 1).min(n.saturating_sub(1)),
        KeyCode::PageUp => p.cursor = p.cursor.saturating_sub(10),
        KeyCode::PageDown => p.cursor = (p.cursor + 10).min(n.saturating_sub(1)),
        KeyCode::Home | KeyCode::Char('g') => p.cursor = 0,
        KeyCode::End | KeyCode::Char('G') => p.cursor = n.saturating_sub(1),
        _ => {}
    }
    app.popup = Popup::Layers(p);
}

fn mouse(app: &mut App, m: MouseEvent, cmds: &mut Vec<Cmd>) {
    let Some(panes) = view::layout(Rect::new(0, 0, app.size.0, app.size.1)) else { return };
    let at = Position::new(m.column, m.row);
    let files = view::inner(panes.files);
    let classes = view::inner(panes.classes);
    match m.kind {
        MouseEventKind::Down(MouseButton::Left) => {
            if app.popup != Popup::None {
                if app.popup == Popup::Help {
                    app.popup = Popup::None;
                }
                return;
            }
            if files.contains(at) {
                app.focus = Focus::Files;
                let pos = app.files.offset + usize::from(at.y - files.y);
                if pos < app.files.len() {
                    select(app, pos, cmds);
                }
            } else if classes.contains(at) {
                app.focus = Focus::Classes;
                let row = usize::from((at.y - classes.y) / CLASS_LINES);
                if let Some(p) = app.class_rows().get(row) {
                    set_target(app, p.index, cmds);
                }
            }
        }
        MouseEventKind::ScrollDown | MouseEventKind::ScrollUp => {
            let down = m.kind == MouseEventKind::ScrollDown;
            if files.contains(at) {
                let max = app.files.len().saturating_sub(usize::from(files.height));
                app.files.offset =
                    if down { (app.files.offset + 3).min(max) } else { app.files.offset.saturating_sub(3) };
            } else if classes.contains(at) {
                step_class(app, if down { 1 } else { -1 }, cmds);
            }
        }
        _ => {}
    }
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
    cmds.push(Cmd::Worker(Request::Show { serial, path, class: None, method: app.method }));
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
    if let Some(c) = &mut app.current {
        c.error = None;
    }
    cmds.push(Cmd::Worker(Request::Show { serial, path, class: app.target, method: app.method }));
}

fn set_alpha(app: &mut App, alpha: f64) {
    app.alpha = (alpha.clamp(0.0, 1.0) * 10.0).round() / 10.0;
    compose(app);
}

fn cycle<T: Copy + PartialEq>(all: &[T], now: T, delta: isize) -> T {
    let i = all.iter().position(|&x| x == now).unwrap_or(0) as isize;
    all[(i + delta).rem_euclid(all.len() as isize) as usize]
}

fn worker(app: &mut App, r: Response) {
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
                c.top = loaded.scores.top_k(k, &labels);
                c.loaded = Some(loaded);
                c.cached = cached;
                compose(app);
            }
        }
        Response::Map { serial, path, class, method, map, status, timings } => {
            if serial != app.map_serial || app.current.as_ref().is_none_or(|c| c.path != path) {
                return;
            }
            app.target = Some(class);
            if let Some(c) = &mut app.current {
                c.map = Some(ShownMap { serial, class, method, map, status, timings });
            }
            compose(app);
        }
        Response::Failed { serial, path, error } => {
            if let Some(e) = app.files.entry_mut(&path) {
                e.error = Some(error.clone());
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

/// Recompose the picture from the current image, map and display settings.
pub fn compose(app: &mut App) {
    let Some(cur) = &app.current else {
        app.picture = None;
        return;
    };
    let Some(loaded) = &cur.loaded else {
        app.picture = None;
        return;
    };
    let t0 = Instant::now();
    let view = Arc::new(loaded.view.clone());
    // While a new map is computed the previous one stays on screen (marked "computing…").
    let map = cur.map.as_ref();
    let overlay = || -> Arc<RgbImage> {
        match map {
            Some(m) => render::overlay(&loaded.view, m.map.view(), app.colormap, app.alpha)
                .map(Arc::new)
                .unwrap_or_else(|_| view.clone()),
            None => view.clone(),
        }
    };
    let images = match app.view {
        ViewMode::Original => vec![view.clone()],
        ViewMode::Overlay => vec![overlay()],
        ViewMode::Heatmap => vec![match map {
            Some(m) => {
                let (w, h) = (loaded.view.width() as usize, loaded.view.height() as usize);
                Arc::new(render::heatmap_image(render::upsample_map(m.map.view(), h, w).view(), app.colormap))
            }
            None => view.clone(),
        }],
        ViewMode::SideBySide => vec![view.clone(), overlay()],
    };
    app.picture_serial += 1;
    app.picture = Some(Picture { id: app.picture_serial, images, compose_ms: t0.elapsed().as_secs_f64() * 1e3 });
}

fn save(app: &mut App, cmds: &mut Vec<Cmd>) {
    let Some(cur) = &app.current else { return };
    let (Some(loaded), Some(map)) = (&cur.loaded, &cur.map) else {
        app.message = Some("nothing to save yet: the map is still being computed".into());
        return;
    };
    match render::overlay(&loaded.view, map.map.view(), app.colormap, app.alpha) {
        Ok(img) => {
            let name = save_name(&cur.path, &app.info.labels.name(map.class), map.method);
            cmds.push(Cmd::Save { image: Arc::new(img), path: app.settings.save_dir.join(name) });
        }
        Err(e) => app.message = Some(format!("not saved: {e}")),
    }
}

/// `IMAGE-STEM.CLASS.METHOD.png`, the name `explain --out DIR` uses too.
pub fn save_name(image: &Path, label: &str, method: Method) -> String {
    let stem = image.file_stem().map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
    let mut slug = String::new();
    for ch in label.chars() {
        if ch.is_alphanumeric() {
            slug.extend(ch.to_lowercase());
        } else if !slug.ends_with('_') {
            slug.push('_');
        }
    }
    format!("{stem}.{}.{method}.png", slug.trim_matches('_'))
}
