//! The files pane: every listed image with its prediction, triage mark and notes, fitted to
//! the pane's width.

use super::*;

pub(super) fn draw_files(frame: &mut Frame<'_>, app: &App, area: Rect) {
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
        return (vec![e.fault.word().into()], Style::default().fg(Color::Red));
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
