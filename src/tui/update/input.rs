//! Keys and the mouse: what each input means in each mode (the main view through the key
//! table of [`super::super::keys`], the help, the class search, the layer picker, the triage
//! summary), turned into state changes and commands.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::{Position, Rect};

use super::*;
pub(super) fn key(app: &mut App, k: KeyEvent, cmds: &mut Vec<Cmd>) {
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
        Popup::Summary(_) => return summary_key(app, k, cmds),
    }
    let Some(action) = app.settings.keys.action(&k) else { return };
    match action {
        Action::Quit => app.quit = true,
        Action::Help => app.popup = Popup::Help,
        Action::ToggleFocus => {
            app.focus = match app.focus {
                Focus::Files => Focus::Classes,
                Focus::Classes => Focus::Files,
            }
        }
        Action::FocusFiles => app.focus = Focus::Files,
        Action::FocusClasses => app.focus = Focus::Classes,
        Action::Up => step(app, -1, cmds),
        Action::Down => step(app, 1, cmds),
        Action::PageUp => step(app, -(page(app) as isize), cmds),
        Action::PageDown => step(app, page(app) as isize, cmds),
        Action::First => step(app, isize::MIN / 2, cmds),
        Action::Last => step(app, isize::MAX / 2, cmds),
        Action::NextMethod => set_method(app, cycle(&Method::ALL, app.method, 1), cmds),
        Action::PrevMethod => set_method(app, cycle(&Method::ALL, app.method, -1), cmds),
        Action::Layers => {
            let cursor = app.info.layers.iter().position(|l| l.tensor == app.info.layer.tensor).unwrap_or(0);
            app.popup = Popup::Layers(crate::tui::state::LayerPicker { cursor, offset: 0 });
        }
        Action::View => {
            let compare = compare_unavailable(app).is_none();
            set_view(app, app.view.next(compare), cmds);
        }
        Action::Compare => {
            if app.view == ViewMode::Compare {
                set_view(app, ViewMode::Overlay, cmds);
            } else if let Some(why) = compare_unavailable(app) {
                app.message = Some(why);
            } else {
                set_view(app, ViewMode::Compare, cmds);
            }
        }
        Action::Summary => match triage_unavailable(app) {
            Some(why) => app.message = Some(why),
            None => {
                app.triage.summary();
                let first = summary_items(app).first().copied();
                app.popup = Popup::Summary(SummaryPopup { selected: first });
            }
        },
        Action::Filter => match triage_unavailable(app) {
            Some(why) => app.message = Some(why),
            None => {
                app.triage.filter = triage::next_filter(&app.triage.filter);
                apply_order(app, cmds);
            }
        },
        a @ (Action::SortNext | Action::SortPrev) => match triage_unavailable(app) {
            Some(why) => app.message = Some(why),
            None => {
                app.triage.sort = cycle(&triage::SORTS, app.triage.sort, if a == Action::SortNext { 1 } else { -1 });
                apply_order(app, cmds);
            }
        },
        a @ (Action::NextMistake | Action::PrevMistake) => match triage_unavailable(app) {
            Some(why) => app.message = Some(why),
            None => match triage::next_mistake(&app.files, &app.triage, a == Action::NextMistake) {
                Some(pos) => select(app, pos, cmds),
                None => app.message = Some("no misclassified image in this list (yet)".into()),
            },
        },
        Action::Colormap => {
            app.colormap = cycle(&Colormap::ALL, app.colormap, 1);
            compose(app);
        }
        Action::AlphaUp => set_alpha(app, app.alpha + ALPHA_STEP),
        Action::AlphaDown => set_alpha(app, app.alpha - ALPHA_STEP),
        Action::Score => {
            let score = match app.info.score {
                ScoreKind::Logit => ScoreKind::Prob,
                ScoreKind::Prob => ScoreKind::Logit,
            };
            cmds.push(Cmd::Worker(Request::SetScore { score }));
            request_map(app, cmds);
        }
        Action::Save => save(app, cmds),
        Action::Search => {
            let mut s = Search::default();
            refresh_search(app, &mut s);
            app.popup = Popup::Search(s);
        }
    }
}

/// The summary view's selectable items (computing the summary if needed).
fn summary_items(app: &mut App) -> Vec<SummaryItem> {
    app.triage.summary();
    let s = app.triage.summary.as_ref().expect("computed above");
    triage::summary_items(&triage::summary_rows(&app.triage, s, &app.files, &app.info.labels))
}

fn summary_key(app: &mut App, k: KeyEvent, cmds: &mut Vec<Cmd>) {
    let Popup::Summary(mut p) = std::mem::replace(&mut app.popup, Popup::None) else { return };
    let items = summary_items(app);
    let at = p.selected.and_then(|s| items.iter().position(|&i| i == s));
    let last = items.len().saturating_sub(1);
    let to = |pos: usize| items.get(pos).copied();
    if k.code == KeyCode::Enter {
        if let Some(item) = at.and_then(to) {
            apply_summary_item(app, item, cmds);
            return;
        }
    }
    match app.settings.keys.action(&k) {
        _ if k.code == KeyCode::Esc => return,
        Some(Action::Quit | Action::Summary) => return,
        Some(Action::Up) => p.selected = to(at.map_or(0, |a| a.saturating_sub(1))),
        Some(Action::Down) => p.selected = to(at.map_or(0, |a| (a + 1).min(last))),
        Some(Action::PageUp) => p.selected = to(at.map_or(0, |a| a.saturating_sub(10))),
        Some(Action::PageDown) => p.selected = to(at.map_or(0, |a| (a + 10).min(last))),
        Some(Action::First) => p.selected = to(0),
        Some(Action::Last) => p.selected = to(last),
        _ => {}
    }
    app.popup = Popup::Summary(p);
}

/// Enter on a summary row: filter by a confusion or a class, or select an image.
fn apply_summary_item(app: &mut App, item: SummaryItem, cmds: &mut Vec<Cmd>) {
    app.focus = Focus::Files;
    match item {
        SummaryItem::Confusion { truth, predicted } => {
            app.triage.filter = Filter::Confusion { truth, predicted };
            apply_order(app, cmds);
        }
        SummaryItem::Class(c) => {
            app.triage.filter = Filter::TrueClass(c);
            apply_order(app, cmds);
        }
        SummaryItem::Image(entry) => {
            if !app.files.order.contains(&entry) {
                app.triage.filter = Filter::All;
                apply_order(app, cmds);
            }
            if let Some(pos) = app.files.order.iter().position(|&i| i == entry) {
                select(app, pos, cmds);
            }
        }
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
    let action = app.settings.keys.action(&k);
    match k.code {
        KeyCode::Esc => return,
        _ if matches!(action, Some(Action::Quit | Action::Layers)) => return,
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
        _ => match action {
            Some(Action::Up) => p.cursor = p.cursor.saturating_sub(1),
            Some(Action::Down) => p.cursor = (p.cursor + 1).min(n.saturating_sub(1)),
            Some(Action::PageUp) => p.cursor = p.cursor.saturating_sub(10),
            Some(Action::PageDown) => p.cursor = (p.cursor + 10).min(n.saturating_sub(1)),
            Some(Action::First) => p.cursor = 0,
            Some(Action::Last) => p.cursor = n.saturating_sub(1),
            _ => {}
        },
    }
    app.popup = Popup::Layers(p);
}

pub(super) fn mouse(app: &mut App, m: MouseEvent, cmds: &mut Vec<Cmd>) {
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
