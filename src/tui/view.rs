//! The state drawn as ratatui widgets: files | image | classes above a status bar, popups
//! (help, class search, layer picker) over them, and a plain message when the terminal is too
//! small for the layout.
//!
//! [`layout`] is shared with `update` so mouse clicks hit exactly what was drawn. The triage
//! summary popup is drawn by [`super::summary_view`].

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph, Wrap};

use crate::dataset::stats::{Filter, Outcome, SortKey};

use super::image_view::ImageView;
use super::state::{App, FileEntry, Focus, Popup};
use super::triage::{self, ScanState};
use super::update::CLASS_LINES;

/// Smallest terminal the layout is drawn in.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 12;
/// Lines of the status bar.
pub const STATUS_LINES: u16 = 2;

/// Text colours that read on light and dark backgrounds alike. The 16 ANSI colours are the
/// terminal's own, and xterm's yellow, green, cyan and grey are bright tones made for a black
/// background: under 2:1 against its default white (the file list's grey predictions were all but
/// invisible). These palette entries keep at least 3:1 against both white and black.
pub(super) mod pal {
    use ratatui::style::Color;
    /// Warnings, progress (#af8700: 3.3:1 on white, 6.3:1 on black).
    pub const WARN: Color = Color::Indexed(136);
    /// Done, correct (#008700: 5.1:1 on white, 4.1:1 on black).
    pub const OK: Color = Color::Indexed(28);
    /// Focus, keys, the method (#008787: 4.6:1 on white, 4.6:1 on black).
    pub const ACCENT: Color = Color::Indexed(30);
    /// Separators, hints, unfocused borders (#808080: 3.9:1 on white, 5.3:1 on black).
    pub const MUTED: Color = Color::Indexed(244);
}

/// Where each pane is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Panes {
    pub files: Rect,
    pub image: Rect,
    pub classes: Rect,
    pub status: Rect,
}

/// The panes for a terminal area, or `None` when it is too small to draw them legibly.
pub fn layout(area: Rect) -> Option<Panes> {
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        return None;
    }
    let [body, status] = Layout::vertical([Constraint::Min(0), Constraint::Length(STATUS_LINES)]).areas(area);
    let files_w = (area.width * 27 / 100).clamp(18, 48);
    let classes_w = (area.width * 24 / 100).clamp(22, 40);
    let [files, image, classes] =
        Layout::horizontal([Constraint::Length(files_w), Constraint::Min(10), Constraint::Length(classes_w)])
            .areas(body);
    Some(Panes { files, image, classes, status })
}

/// A bordered pane's content area.
pub fn inner(r: Rect) -> Rect {
    Block::default().borders(Borders::ALL).inner(r)
}

fn pane<'a>(title: impl Into<Line<'a>>, focused: bool) -> Block<'a> {
    let style = if focused { Style::default().fg(pal::ACCENT) } else { Style::default().fg(pal::MUTED) };
    Block::default()
        .borders(Borders::ALL)
        .border_type(if focused { BorderType::Thick } else { BorderType::Plain })
        .border_style(style)
        .title(title)
}

/// Draw the whole frame.
pub fn draw(frame: &mut Frame<'_>, app: &App, images: &mut ImageView) {
    let area = frame.area();
    let Some(panes) = layout(area) else {
        let msg = format!(
            "terminal too small\nneeds {MIN_WIDTH}×{MIN_HEIGHT}, is {}×{}\nenlarge it, or press q",
            area.width, area.height
        );
        let y = area.height.saturating_sub(3) / 2;
        let r = Rect::new(area.x, area.y + y, area.width, area.height - y);
        frame.render_widget(Paragraph::new(msg).alignment(Alignment::Center).wrap(Wrap { trim: true }), r);
        return;
    };
    draw_files(frame, app, panes.files);
    images.set_overlaid(!matches!(app.popup, Popup::None));
    draw_image(frame, app, panes.image, images);
    draw_classes(frame, app, panes.classes);
    draw_status(frame, app, panes.status, images);
    match &app.popup {
        Popup::None => {}
        Popup::Help => draw_help(frame, app, area),
        Popup::Search(_) => draw_search(frame, app, area),
        Popup::Layers(_) => draw_layers(frame, app, area),
        Popup::Summary(p) => super::summary_view::draw(frame, app, p, area),
    }
    images.finish(frame.buffer_mut());
}

fn draw_files(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let f = &app.files;
    let t = &app.triage;
    let listing = if f.done { "" } else { " listing…" };
    let mut view = String::new();
    if t.filter != Filter::All {
        view += &format!(" · {}", triage::filter_name(&t.filter, &app.info.labels));
    }
    if t.sort != SortKey::Name {
        view += &format!(" · {}", triage::sort_name(t.sort));
    }
    let title = format!(" Files {}/{}{view}{listing} ", if f.is_empty() { 0 } else { f.cursor + 1 }, f.len());
    let block = pane(title, app.focus == Focus::Files);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if f.is_empty() {
        let msg = if !f.entries.is_empty() {
            format!("no image is {} (f: next filter)", triage::filter_name(&t.filter, &app.info.labels))
        } else if f.done {
            format!("no images under {}", app.settings.root.display())
        } else {
            "listing…".to_owned()
        };
        frame.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }).style(Style::default().fg(pal::WARN)), inner);
        return;
    }
    // With ground truth, every row starts with its mark (✓, ✗, or blanks until scanned).
    let marks = t.state != ScanState::Off;
    let width = usize::from(inner.width).saturating_sub(if marks { 2 } else { 0 });
    let lines: Vec<Line<'_>> = f
        .order
        .iter()
        .enumerate()
        .skip(f.offset)
        .take(usize::from(inner.height))
        .map(|(pos, &i)| {
            let e = &f.entries[i];
            let (mark, mark_style) = match triage::outcome(t, e) {
                Some(Outcome::Correct) => ("✓ ", Style::default().fg(pal::OK)),
                Some(Outcome::Wrong) => ("✗ ", Style::default().fg(Color::Red)),
                _ => ("  ", Style::default()),
            };
            let (notes, note_style) = file_notes(app, e);
            let line = file_line_fitting(&e.name, &notes, width);
            let selected = pos == f.cursor;
            let base = match (selected, app.focus == Focus::Files) {
                (true, true) => Style::default().fg(Color::Black).bg(pal::ACCENT).add_modifier(Modifier::BOLD),
                (true, false) => Style::default().add_modifier(Modifier::REVERSED),
                _ => Style::default(),
            };
            let mut spans = Vec::new();
            if marks {
                spans.push(Span::styled(mark, if selected { base } else { mark_style.add_modifier(Modifier::BOLD) }));
            }
            spans.push(Span::styled(line.0, base));
            spans.push(Span::styled(line.1, if selected { base } else { note_style }));
            Line::from(spans)
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}

/// The right side of a file row, longest first (the row keeps the longest that fits): a
/// mistake reads `true → predicted p%`, anything else `predicted p%`.
fn file_notes(app: &App, e: &FileEntry) -> (Vec<String>, Style) {
    let labels = &app.info.labels;
    if e.error.is_some() && e.result.is_none() {
        return (vec!["unreadable".into()], Style::default().fg(Color::Red));
    }
    let Some((class, p)) = app.triage.result(e).and_then(|r| Some((r.predicted()?, r.confidence()))).or(e.prediction)
    else {
        return (Vec::new(), Style::default());
    };
    let pred = format!("{} {:.0}%", labels.name(class), p * 100.0);
    let (notes, style) = match e.truth {
        Some(truth) if truth != class => {
            (vec![format!("{} → {pred}", labels.name(truth)), pred], Style::default().fg(Color::LightRed))
        }
        _ => (vec![pred], Style::default().fg(Color::Reset)),
    };
    if e.missing {
        // A recorded image not under the root: the prediction stands, the map cannot be made.
        let mut marked: Vec<String> = notes.iter().map(|n| format!("missing · {n}")).collect();
        marked.push("missing".into());
        return (marked, Style::default().fg(Color::Red));
    }
    (notes, style)
}

/// Shortest room left for the file name before a shorter note is chosen.
const NAME_ROOM: usize = 14;

/// [`file_line`] with the longest of `notes` that leaves the name [`NAME_ROOM`] columns; the
/// last (shortest) note gets [`file_line`]'s own rule, as a row without truth would.
pub fn file_line_fitting(name: &str, notes: &[String], width: usize) -> (String, String) {
    let room = NAME_ROOM.min(name.chars().count());
    let longer = notes.split_last().map_or(&[][..], |(_, rest)| rest);
    let note = longer.iter().find(|n| n.chars().count() + 1 + room <= width).or(notes.last());
    file_line(name, note.map_or("", String::as_str), width)
}

/// A file row: the name left, the prediction right, cut to `width` columns (the name loses its
/// start first: the file name matters more than the folder).
pub fn file_line(name: &str, note: &str, width: usize) -> (String, String) {
    let note_len = note.chars().count();
    let note = if note_len + 8 > width { String::new() } else { format!(" {note}") };
    let room = width.saturating_sub(note.chars().count());
    let chars: Vec<char> = name.chars().collect();
    let name = if chars.len() > room && room > 1 {
        format!("…{}", chars[chars.len() - (room - 1)..].iter().collect::<String>())
    } else {
        chars.iter().take(room).collect()
    };
    let pad = room.saturating_sub(name.chars().count());
    (format!("{name}{}", " ".repeat(pad)), note)
}

fn draw_image(frame: &mut Frame<'_>, app: &App, area: Rect, images: &mut ImageView) {
    let mut title = vec![Span::raw(" ")];
    if let Some(c) = &app.current {
        title.push(Span::styled(
            super::state::display_name(&app.settings.root, &c.path),
            Style::default().add_modifier(Modifier::BOLD),
        ));
        let mode = match app.picture.as_ref().and_then(|p| p.note.as_ref()) {
            Some(_) => "overlay (compare: n/a)",
            None => app.view.name(),
        };
        title.push(Span::raw(format!(" · {mode} ")));
        if app.computing() {
            title.push(Span::styled("computing… ", Style::default().fg(pal::WARN)));
        }
    } else {
        title.push(Span::raw("Image "));
    }
    let block = pane(Line::from(title), false);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let text = |msg: String, color: Color| {
        Paragraph::new(msg).wrap(Wrap { trim: true }).style(Style::default().fg(color)).alignment(Alignment::Center)
    };
    let Some(cur) = &app.current else {
        let msg = if app.files.done && app.files.is_empty() {
            let skipped = app.files.skipped.as_deref().map(|s| format!(" ({s})")).unwrap_or_default();
            format!(
                "no images under {}{skipped}\ncamscope reads PNG, JPEG, GIF, BMP, TIFF, WebP, PNM and ICO files.\nPress q to quit.",
                app.settings.root.display()
            )
        } else {
            "waiting for the listing…".into()
        };
        frame.render_widget(text(msg, pal::WARN), inner);
        return;
    };
    if let Some(e) = &cur.error {
        frame.render_widget(text(format!("cannot show this image:\n{e}"), Color::Red), inner);
        return;
    }
    let Some(pic) = &app.picture else {
        frame.render_widget(text("loading…".into(), pal::WARN), inner);
        return;
    };
    let mut img_area = inner;
    let note = match (&pic.note, &cur.map) {
        (Some(n), _) => Some(n.clone()),
        (None, Some(m)) if m.status != crate::cam::MapStatus::Ok && pic.captions.is_empty() => {
            Some(format!("note: {}", m.status.describe()))
        }
        _ => None,
    };
    if let Some(note) = note {
        if inner.height > 3 {
            let [top, rest] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
            frame.render_widget(text(note, pal::WARN), top);
            img_area = rest;
        }
    }
    let n = pic.images.len() as u32;
    let cols = Layout::horizontal(vec![Constraint::Ratio(1, n); n as usize]).split(img_area);
    // Captioned images share one height, so captions line up across columns of unequal width.
    let rows = pic
        .images
        .iter()
        .zip(cols.iter())
        .map(|(img, r)| fitted_rows(img.dimensions(), r.width, r.height.saturating_sub(CAPTION_LINES)))
        .min()
        .unwrap_or(0);
    for (i, (img, r)) in pic.images.iter().zip(cols.iter()).enumerate() {
        let mut r = *r;
        if let Some(c) = pic.captions.get(i) {
            if r.height > 4 {
                // The caption sits right above the image, the pair centred in the column.
                let top = r.y + (r.height - CAPTION_LINES - rows) / 2;
                let head = Rect::new(r.x, top, r.width, CAPTION_LINES);
                let caption = vec![
                    Line::from(Span::styled(
                        c.title.clone(),
                        Style::default().fg(pal::ACCENT).add_modifier(Modifier::BOLD),
                    )),
                    Line::from(c.detail.clone()),
                ];
                frame.render_widget(Paragraph::new(caption).alignment(Alignment::Center), head);
                r = Rect::new(r.x, top + CAPTION_LINES, r.width, rows);
            }
        }
        images.render(frame.buffer_mut(), r, pic.id, i, img);
    }
}

/// Lines of a caption over an image (what it is, which classes).
const CAPTION_LINES: u16 = 2;

/// Rows a `(w, h)` image takes when fitted in `cols × rows` cells of two pixels' height (the
/// half-block aspect; graphics protocols draw terminal cells of about the same shape).
pub fn fitted_rows((w, h): (u32, u32), cols: u16, rows: u16) -> u16 {
    if w == 0 || h == 0 {
        return 0;
    }
    let scale = (f64::from(cols) / f64::from(w)).min(f64::from(rows) * 2.0 / f64::from(h));
    ((f64::from(h) * scale / 2.0).ceil() as u16).min(rows)
}

fn draw_classes(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let k = app.settings.top_k;
    let block = pane(format!(" Top {k} classes "), app.focus == Focus::Classes);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let rows = app.class_rows();
    if rows.is_empty() {
        let msg = match &app.current {
            Some(c) if c.error.is_some() => "",
            Some(_) => "computing…",
            None => "",
        };
        frame.render_widget(Paragraph::new(msg).style(Style::default().fg(pal::WARN)), inner);
        return;
    }
    let hl = app.highlighted_class();
    let width = usize::from(inner.width);
    let mut lines = Vec::new();
    for (i, p) in rows.iter().enumerate() {
        let on = Some(p.index) == hl;
        let searched = i >= app.current.as_ref().map_or(0, |c| c.top.len());
        let mark = if on { "▶ " } else { "  " };
        let pct = format!("{:5.1}%", p.probability * 100.0);
        let label = if searched { format!("{} (#{})", p.label, p.index) } else { p.label.clone() };
        let room = width.saturating_sub(2 + pct.len() + 1);
        let label: String = if label.chars().count() > room {
            label.chars().take(room.saturating_sub(1)).chain(['…']).collect()
        } else {
            format!("{label:<room$}")
        };
        let style = if on {
            let s = Style::default().add_modifier(Modifier::BOLD);
            if app.focus == Focus::Classes {
                s.fg(Color::Black).bg(pal::ACCENT)
            } else {
                s.add_modifier(Modifier::REVERSED)
            }
        } else if searched {
            Style::default().fg(Color::Magenta)
        } else {
            Style::default()
        };
        lines.push(Line::from(Span::styled(format!("{mark}{label} {pct}"), style)));
        lines.push(Line::from(Span::styled(
            format!("  {}", bar(p.probability, width.saturating_sub(2))),
            Style::default().fg(if on { pal::ACCENT } else { Color::Blue }),
        )));
    }
    debug_assert_eq!(CLASS_LINES, 2);
    frame.render_widget(Paragraph::new(lines), inner);
}

/// A horizontal bar of `width` cells filled to `fraction`, in eighths of a cell.
pub fn bar(fraction: f32, width: usize) -> String {
    const EIGHTHS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    let eighths = (f64::from(fraction.clamp(0.0, 1.0)) * width as f64 * 8.0).round() as usize;
    let mut s: String = "█".repeat(eighths / 8);
    if eighths % 8 > 0 && eighths / 8 < width {
        s.push(EIGHTHS[eighths % 8]);
    }
    s
}

fn draw_status(frame: &mut Frame<'_>, app: &App, area: Rect, images: &ImageView) {
    let info = &app.info;
    let sep = || Span::styled(" │ ", Style::default().fg(pal::MUTED));
    let first = vec![
        Span::styled(info.model_name.clone(), Style::default().add_modifier(Modifier::BOLD)),
        sep(),
        Span::raw(format!("layer {} {}", info.layer.tensor, info.layer.shape)),
        sep(),
        Span::styled(app.method.to_string(), Style::default().fg(pal::ACCENT)),
        sep(),
        Span::raw(format!("{} score", info.score)),
        sep(),
        Span::styled(
            info.provider.clone(),
            Style::default().fg(if info.provider == "CPU" { pal::WARN } else { pal::OK }),
        ),
        sep(),
        Span::raw(images.describe().to_owned()),
    ];
    let mut second = Vec::new();
    // Messages (a saved file's path, an error) come first: they must not be cut off.
    if let Some(m) = &app.message {
        second.push(Span::styled(m.clone(), Style::default().fg(pal::WARN)));
        second.push(sep());
    }
    if let Some(scan) = scan_status(app) {
        second.push(scan);
        second.push(sep());
    }
    if let Some(m) = app.current.as_ref().and_then(|c| c.map.as_ref()) {
        let t = &m.timings;
        let render = app.picture.as_ref().map_or(0.0, |p| p.compose_ms);
        let body = if app.current.as_ref().is_some_and(|c| c.cached) {
            "cached".to_owned()
        } else {
            format!("{:.1} ms", t.body_ms)
        };
        second.push(Span::raw(format!(
            "body {body} · head {:.1} ms · map {:.1} ms · render {render:.1} ms",
            t.head_ms, t.map_ms
        )));
        second.push(sep());
    }
    let (n, bytes) = app.cache;
    let listing = if app.files.done { "" } else { " (listing…)" };
    second.push(Span::raw(format!(
        "cache {n} img {:.0} MB · {} images{listing} · {} α {:.1}",
        bytes as f64 / 1e6,
        app.files.len(),
        app.colormap,
        app.alpha,
    )));
    if app.message.is_none() {
        second.push(sep());
        second.push(Span::styled("? help · q quit", Style::default().fg(pal::MUTED)));
    }
    frame.render_widget(Paragraph::new(vec![Line::from(first), Line::from(second)]), area);
}

/// The scan's progress for the status bar: `scan n/N · r img/s`, then how it ended, with the
/// running top-1 accuracy.
fn scan_status(app: &App) -> Option<Span<'static>> {
    let t = &app.triage;
    let p = &t.progress;
    let accuracy = match p.labeled {
        0 => String::new(),
        n => format!(" · top-1 {:.1}%", p.correct as f64 * 100.0 / n as f64),
    };
    let cached = match (p.cached, p.computed) {
        (0, _) => String::new(),
        (c, 0) => format!(" · all {c} from cache"),
        (c, _) => format!(" · {c} from cache"),
    };
    let rate = p.rate.map(|r| format!(" · {r:.0} img/s")).unwrap_or_default();
    let (text, color) = match &t.state {
        ScanState::Off | ScanState::NoTruth => return None,
        ScanState::Waiting => ("scan waits for the listing".to_owned(), pal::MUTED),
        ScanState::Scanning => (format!("scan {}/{}{rate}{cached}{accuracy}", p.done(), p.total), pal::WARN),
        ScanState::Done { seconds } => {
            (format!("scan {}/{} done in {seconds:.1} s{rate}{cached}{accuracy}", p.done(), p.total), pal::OK)
        }
        ScanState::Failed(_) => (format!("scan stopped at {}/{}{accuracy}", p.done(), p.total), Color::Red),
        ScanState::Recorded { source } => {
            let missing = match p.missing {
                0 => String::new(),
                n => format!(" · {n} missing"),
            };
            (format!("{source} · {} images recorded{accuracy}{missing}", p.total), pal::OK)
        }
    };
    Some(Span::styled(text, Style::default().fg(color)))
}

/// A centred rectangle of at most `w × h` inside `area`.
pub(super) fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let (w, h) = (w.min(area.width), h.min(area.height));
    Rect::new(area.x + (area.width - w) / 2, area.y + (area.height - h) / 2, w, h)
}

pub(super) fn popup_block(title: &str) -> Block<'_> {
    Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Double)
        .border_style(Style::default().fg(pal::ACCENT))
        .title(title)
}

fn draw_help(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let rows = app.settings.keys.help_rows();
    let key_w = rows.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    let mut lines: Vec<Line<'_>> = rows
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!(" {k:<key_w$}  "), Style::default().fg(pal::ACCENT)),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(" any key closes this help", Style::default().fg(pal::MUTED))));
    let w = (rows.iter().map(|(_, v)| key_w + v.chars().count() + 5).max().unwrap_or(40) + 2) as u16;
    let r = centered(area, w, lines.len() as u16 + 2);
    frame.render_widget(Clear, r);
    frame.render_widget(Paragraph::new(lines).block(popup_block(" camscope keys ")), r);
}

fn draw_search(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let Popup::Search(s) = &app.popup else { return };
    let r = centered(area, 60, area.height.saturating_sub(6).max(8));
    frame.render_widget(Clear, r);
    let block = popup_block(" Target a class: type a name or an index, Enter to explain it, Esc to close ");
    let inner = block.inner(r);
    frame.render_widget(block, r);
    let [input, list] = Layout::vertical([Constraint::Length(2), Constraint::Min(0)]).areas(inner);
    frame.render_widget(
        Paragraph::new(Line::from(vec![Span::styled("/ ", Style::default().fg(pal::ACCENT)), Span::raw(&s.query)])),
        input,
    );
    let h = usize::from(list.height);
    let offset = s.cursor.saturating_sub(h.saturating_sub(1));
    let probs = app.current.as_ref().and_then(|c| c.loaded.as_ref()).map(|l| &l.scores.probabilities);
    let lines: Vec<Line<'_>> = s
        .hits
        .iter()
        .enumerate()
        .skip(offset)
        .take(h)
        .map(|(i, (class, matched))| {
            let name = app.info.labels.name(*class);
            let also = if *matched != name { format!(" ({matched})") } else { String::new() };
            let p = probs.and_then(|p| p.get(*class)).map(|p| format!("{:6.2}%", p * 100.0)).unwrap_or_default();
            let style =
                if i == s.cursor { Style::default().fg(Color::Black).bg(pal::ACCENT) } else { Style::default() };
            Line::from(Span::styled(format!("{class:>5}  {p}  {name}{also}"), style))
        })
        .collect();
    if lines.is_empty() {
        frame.render_widget(Paragraph::new("no class matches").style(Style::default().fg(pal::WARN)), list);
    } else {
        frame.render_widget(Paragraph::new(lines), list);
    }
}

fn draw_layers(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let Popup::Layers(p) = &app.popup else { return };
    let r = centered(area, area.width.saturating_sub(8).min(100), area.height.saturating_sub(4));
    frame.render_widget(Clear, r);
    let block = popup_block(" Target layer: Enter to use it, Esc to close (* default, ● current) ");
    let inner = block.inner(r);
    frame.render_widget(block, r);
    let h = usize::from(inner.height);
    let offset = p.cursor.saturating_sub(h.saturating_sub(1));
    let lines: Vec<Line<'_>> = app
        .info
        .layers
        .iter()
        .enumerate()
        .skip(offset)
        .take(h)
        .map(|(i, l)| {
            let cur = if l.tensor == app.info.layer.tensor { "●" } else { " " };
            let def = if l.is_default { "*" } else { " " };
            let style =
                if i == p.cursor { Style::default().fg(Color::Black).bg(pal::ACCENT) } else { Style::default() };
            Line::from(Span::styled(format!("{cur}{def} {:<16} {:<22} {}", l.op, l.shape, l.tensor), style))
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::buffer::Buffer;
    use std::collections::HashSet;

    use super::super::image_view::{ColorDepth, Renderer};
    use super::super::state::ViewMode;
    use super::super::testing::*;
    use super::super::update::{Msg, update};
    use super::*;
    use crate::dataset::stats::Filter;

    fn render(app: &App, w: u16, h: u16) -> Buffer {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        let mut images = ImageView::new(Renderer::HalfBlocks(ColorDepth::TrueColor));
        t.draw(|f| draw(f, app, &mut images)).unwrap();
        t.backend().buffer().clone()
    }

    fn text(buf: &Buffer) -> String {
        let a = buf.area;
        (a.top()..a.bottom())
            .map(|y| (a.left()..a.right()).map(|x| buf[(x, y)].symbol()).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Background colours of half-block cells inside `r`.
    fn image_colours(buf: &Buffer, r: Rect) -> HashSet<Color> {
        let mut out = HashSet::new();
        for y in r.top()..r.bottom() {
            for x in r.left()..r.right() {
                let c = &buf[(x, y)];
                if c.symbol() == "▀" || c.symbol() == "▄" {
                    out.extend([c.fg, c.bg].into_iter().filter(|&c| c != Color::Reset));
                }
            }
        }
        out
    }

    fn shown() -> App {
        let mut a = listed(&["a.png", "b.png"]);
        update(&mut a, loaded_msg(1, "a.png"));
        update(&mut a, map_msg(1, "a.png", 9, 0));
        a
    }

    /// A newline in a file name used to split its row and shift every row below it.
    #[test]
    fn a_name_with_a_newline_stays_on_its_own_row() {
        let a = listed(&["a\nb.png", "c.png"]);
        let s = text(&render(&a, 100, 20));
        let rows: Vec<&str> = s.lines().collect();
        let first = rows.iter().position(|r| r.contains("┃a\\nb.png")).expect("the escaped name is shown");
        assert!(rows[first + 1].contains("┃c.png"), "the next file is on the next row: {s}");
    }

    #[test]
    fn three_panes_and_a_status_bar() {
        let a = shown();
        let s = text(&render(&a, 120, 40));
        assert!(s.contains("Files 1/2"), "{s}");
        assert!(s.contains("a.png · overlay"), "{s}");
        assert!(s.contains("Top 3 classes"), "{s}");
        assert!(s.contains("▶ class 9"), "highlighted target: {s}");
        assert!(s.contains("class 8") && s.contains("class 7"));
        assert!(s.contains("Tiny │ layer features [N, 8, 7, 7] │ gradcam │ logit score │ CPU │ half-blocks"), "{s}");
        assert!(s.contains("head 0.5 ms"), "{s}");
        assert!(s.contains("a.png") && s.contains("class 9 "), "the file row shows its prediction");
    }

    #[test]
    fn help_search_and_layer_popups() {
        let mut a = shown();
        update(&mut a, ch('?'));
        let s = text(&render(&a, 120, 40));
        assert!(s.contains("camscope keys"));
        for (k, what) in a.settings.keys.help_rows() {
            assert!(s.contains(&k) && s.contains(what), "help lists {k}");
        }
        update(&mut a, ch('?'));
        update(&mut a, ch('/'));
        update(&mut a, ch('3'));
        let s = text(&render(&a, 120, 40));
        assert!(s.contains("Target a class") && s.contains("class 3"), "{s}");
        update(&mut a, press(crossterm::event::KeyCode::Esc));
        update(&mut a, ch('L'));
        let s = text(&render(&a, 120, 40));
        assert!(s.contains("Target layer") && s.contains("stem") && s.contains("[N, 8, 7, 7]"), "{s}");
    }

    #[test]
    fn the_readme_key_table_is_the_key_list() {
        let readme = include_str!("../../README.md");
        let table = crate::tui::keys::KeyList::readme_table();
        assert!(readme.contains(&table), "README's key table differs from tui::keys; put this in it:\n{table}");
    }

    #[test]
    fn a_small_terminal_gets_a_message_instead_of_a_layout() {
        let a = shown();
        let s = text(&render(&a, 50, 10));
        assert!(s.contains("terminal too small"), "{s}");
        assert!(s.contains("needs 60×12, is 50×10"), "{s}");
        assert!(!s.contains("Files"));
        assert!(layout(Rect::new(0, 0, MIN_WIDTH, MIN_HEIGHT)).is_some());
    }

    #[test]
    fn empty_folder_and_unreadable_image_messages() {
        let mut a = app();
        update(&mut a, Msg::Listed { paths: vec![], done: true, skipped: Some("2 non-image files skipped".into()) });
        let s = text(&render(&a, 120, 40));
        assert!(s.contains("no images under /data"), "{s}");
        assert!(s.contains("2 non-image files skipped"), "{s}");
        let mut a = listed(&["bad.png"]);
        update(
            &mut a,
            Msg::Worker(super::super::worker::Response::Failed {
                serial: Some(1),
                path: path("bad.png"),
                error: "bad.png: corrupt".into(),
            }),
        );
        let s = text(&render(&a, 120, 40));
        assert!(s.contains("cannot show this image") && s.contains("bad.png: corrupt"), "{s}");
        assert!(s.contains("unreadable"), "the file row is marked: {s}");
    }

    #[test]
    fn view_modes_draw_what_they_say() {
        let mut a = shown();
        let panes = layout(Rect::new(0, 0, 120, 40)).unwrap();
        let img = inner(panes.image);
        let red = Color::Rgb(200, 0, 0);
        // Overlay: blended colours, not the plain view.
        let overlay = image_colours(&render(&a, 120, 40), img);
        assert!(!overlay.is_empty() && !overlay.contains(&red), "{overlay:?}");
        update(&mut a, ch('v'));
        assert_eq!(a.view, ViewMode::Heatmap);
        let heat = image_colours(&render(&a, 120, 40), img);
        assert!(heat.contains(&Color::Rgb(0, 0, 128)), "jet's bottom colour where the map is 0: {heat:?}");
        update(&mut a, ch('v'));
        let orig = image_colours(&render(&a, 120, 40), img);
        assert_eq!(orig, HashSet::from([red]));
        update(&mut a, ch('v'));
        assert_eq!(a.view, ViewMode::SideBySide);
        let buf = render(&a, 120, 40);
        let (left, right) =
            (Rect { width: img.width / 2, ..img }, Rect { x: img.x + img.width / 2, width: img.width / 2, ..img });
        assert_eq!(image_colours(&buf, left), HashSet::from([red]));
        let right = image_colours(&buf, right);
        assert!(right.len() > 5 && !right.contains(&red), "the overlay on the right: {right:?}");
    }

    #[test]
    fn the_file_list_marks_right_and_wrong_with_the_truth_of_mistakes() {
        let mut a = triaged();
        let s = text(&render(&a, 160, 40));
        let row = |name: &str| {
            let found = s.lines().find(|l| l.starts_with('┃') && l.contains(name));
            found.unwrap_or_else(|| panic!("{name}: {s}")).to_owned()
        };
        assert!(row("a.png").contains("✓ a.png") && row("a.png").contains("class 9 90%"), "{}", row("a.png"));
        assert!(row("b.png").contains("✗ b.png"), "{}", row("b.png"));
        assert!(row("b.png").contains("class 1 → class 9 60%"), "a mistake shows its truth: {}", row("b.png"));
        assert!(row("d.png").contains("✗ d.png") && row("d.png").contains("class 3 → class 2 95%"));
        assert!(row("e.png").contains("  e.png") && row("e.png").contains("class 4 70%"), "unlabeled: no mark");
        assert!(s.contains("scan 5/5 done in 1.5 s · 12 img/s · top-1 50.0%"), "{s}");
        // The filter and the sort are in the title; an empty filter says so.
        update(&mut a, ch('f'));
        update(&mut a, ch('o'));
        let s = text(&render(&a, 160, 40));
        assert!(s.contains("Files 2/2 · mistakes · by confidence"), "b.png is still selected: {s}");
        let mut a = triaged();
        a.triage.filter = Filter::Confusion { truth: 9, predicted: 0 };
        update(&mut a, ch('o'));
        update(&mut a, ch('O'));
        let s = text(&render(&a, 120, 40));
        assert!(s.contains("Files 0/0 · class 9 → class 0"), "{s}");
        assert!(s.contains("no image is class 9 → class 0"), "{s}");
        // Too narrow for the truth: the prediction alone.
        let notes = vec!["a long true label → predicted 60%".to_owned(), "predicted 60%".to_owned()];
        assert_eq!(file_line_fitting("b.png", &notes, 30).1, " predicted 60%");
        assert_eq!(file_line_fitting("b.png", &notes, 50).1, " a long true label → predicted 60%");
        let long = "some/folder/long_name.png";
        assert_eq!(file_line_fitting(long, &notes, 22), file_line(long, "predicted 60%", 22), "as without truth");
    }

    #[test]
    fn the_summary_view_lists_accuracy_confusions_mistakes_and_classes() {
        let mut a = triaged();
        update(&mut a, ch('t'));
        let s = text(&render(&a, 120, 40));
        assert!(s.contains("Triage summary"), "{s}");
        assert!(s.contains("5 of 5 images scanned · 4 labeled, 1 unlabeled, 0 unreadable · scan complete"), "{s}");
        assert!(s.contains("top-1 accuracy 50.0% (2/4) · top-5 accuracy 100.0% (4/4)"), "{s}");
        assert!(s.contains("note: a note"), "{s}");
        let confusions = s.find("Most frequent confusions").expect("confusions");
        let c1 = s.find("class 1 → class 9").unwrap();
        assert!(c1 > confusions && s.find("class 3 → class 2").unwrap() > c1, "{s}");
        assert!(s.contains("d.png") && s.contains("class 3 → class 2 95% (true 1%)"), "{s}");
        assert!(s.contains("Least confident correct"), "{s}");
        assert!(s.contains("Per-class accuracy"), "{s}");
        let per_class = &s[s.find("Per-class accuracy").unwrap()..];
        let class1 = per_class.lines().find(|l| l.contains("  class 1 ")).expect("class 1 row");
        assert!(class1.contains("0.0%"), "{class1}");
    }

    #[test]
    fn the_compare_view_draws_three_labelled_panels() {
        let mut a = triaged();
        update(&mut a, ch('n')); // b.png: class 1 taken for 9
        update(&mut a, ch('x'));
        let serial = a.map_serial;
        update(&mut a, loaded_msg(serial, "b.png"));
        update(&mut a, compare_map_msg(serial, "b.png", 9, 1));
        let buf = render(&a, 160, 48);
        let s = text(&buf);
        assert!(s.contains("b.png · compare: predicted | true | predicted − true"), "{s}");
        let img = inner(layout(Rect::new(0, 0, 160, 48)).unwrap().image);
        let third = img.width / 3;
        let panels: Vec<Rect> = (0..3).map(|i| Rect { x: img.x + i * third, width: third, ..img }).collect();
        let caption = |r: Rect, want: &str| {
            (r.top()..r.bottom()).any(|y| {
                let line: String = (r.left()..r.right()).map(|x| buf[(x, y)].symbol()).collect();
                line.contains(want)
            })
        };
        for (r, (title, detail)) in panels.iter().zip([
            ("predicted 63.2%", "class 9"),
            ("true 0.0%", "class 1"),
            ("predicted − true", "class 9 over class 1"),
        ]) {
            assert!(caption(*r, title) && caption(*r, detail), "{title} / {detail} in {r:?}: {s}");
        }
        let colours: Vec<HashSet<Color>> = panels.iter().map(|r| image_colours(&buf, *r)).collect();
        assert!(colours.iter().all(|c| c.len() > 3), "three images: {colours:?}");
        assert_ne!(colours[0], colours[1], "the predicted and the true maps differ");
    }

    #[test]
    fn file_rows_and_bars_fit_their_width() {
        assert_eq!(file_line("a.png", "cat 90%", 20), ("a.png       ".into(), " cat 90%".into()));
        let (name, note) = file_line("some/long/folder/picture.png", "cat 90%", 20);
        assert_eq!((name.as_str(), note.as_str()), ("…picture.png", " cat 90%"));
        assert_eq!(name.chars().count() + note.chars().count(), 20);
        assert_eq!(file_line("a.png", "a very long label 99%", 20).1, "", "no room: the note goes first");
        assert_eq!(bar(1.0, 4), "████");
        assert_eq!(bar(0.5, 4), "██");
        assert_eq!(bar(0.1, 4), "▍");
        assert_eq!(bar(0.0, 4), "");
    }
}
