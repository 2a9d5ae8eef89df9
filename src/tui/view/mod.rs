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

mod classes;
mod files;
mod image;
mod popups;
mod status;

pub use self::classes::bar;
pub use self::files::{file_line, file_line_fitting};
pub use self::image::fitted_rows;
use self::{classes::draw_classes, files::draw_files, image::draw_image, popups::*, status::draw_status};

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
        let readme = include_str!("../../../README.md");
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
                fault: crate::engine::Fault::Unreadable,
            }),
        );
        let s = text(&render(&a, 120, 40));
        assert!(s.contains("cannot show this image") && s.contains("bad.png: corrupt"), "{s}");
        assert!(s.contains("unreadable"), "the file row is marked: {s}");
        // A model that scores an image NaN: the file is fine, and its row says what is not.
        let mut a = listed(&["nan.png"]);
        update(
            &mut a,
            Msg::Worker(super::super::worker::Response::Failed {
                serial: Some(1),
                path: path("nan.png"),
                error: "nan.png: the model m.onnx gave non-finite values for this image".into(),
                fault: crate::engine::Fault::NonFinite,
            }),
        );
        let s = text(&render(&a, 120, 40));
        assert!(s.contains("NaN scores") && !s.contains("unreadable"), "{s}");
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

    /// Images the model scored NaN are counted on their own: their files are fine.
    #[test]
    fn the_summary_counts_nan_scores_apart_from_unreadable_files() {
        let mut a = triage_listed();
        let truths = triage_results().into_iter().map(|(_, r)| r.truth).collect();
        update(&mut a, Msg::Scan(super::super::scanner::ScanEvent::Truth { truths, headline: None, notes: vec![] }));
        let mut results = triage_results();
        results.truncate(3);
        update(
            &mut a,
            Msg::Scan(super::super::scanner::ScanEvent::Progress {
                results,
                unreadable: vec![
                    (3, "d.png: the model gave non-finite values".into(), crate::engine::Fault::NonFinite),
                    (4, "e.png: corrupt".into(), crate::engine::Fault::Unreadable),
                ],
                computed: 3,
                cached: 0,
                rate: None,
            }),
        );
        update(&mut a, Msg::Scan(super::super::scanner::ScanEvent::Finished { seconds: 1.0, note: None }));
        let p = &a.triage.progress;
        assert_eq!((p.unreadable, p.nan_scores, p.done()), (1, 1, 5));
        update(&mut a, ch('t'));
        let s = text(&render(&a, 120, 40));
        assert!(s.contains("3 of 5 images scanned · 3 labeled, 0 unlabeled, 1 unreadable, 1 with NaN scores"), "{s}");
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
