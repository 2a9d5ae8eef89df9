//! The triage summary popup (`t`): accuracy, notes, confusions, the most confident mistakes,
//! the least confident correct answers and per-class accuracy, one scrolling list whose item
//! rows Enter applies. The rows come from [`triage::summary_rows`], the same function
//! `update` moves the selection over, so what is drawn is what is selected.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};

use super::state::{App, SummaryPopup};
use super::triage::{self, RowKind};
use super::view::{centered, pal, popup_block};

pub fn draw(frame: &mut Frame<'_>, app: &App, popup: &SummaryPopup, area: Rect) {
    let r = centered(area, area.width.saturating_sub(6).min(110), area.height.saturating_sub(4));
    frame.render_widget(Clear, r);
    let block = popup_block(" Triage summary: ↑↓ select, Enter filters by the row (or shows the image), Esc closes ");
    let inner = block.inner(r);
    frame.render_widget(block, r);
    let Some(summary) = &app.triage.summary else {
        frame.render_widget(Paragraph::new("computing…").style(Style::default().fg(pal::WARN)), inner);
        return;
    };
    let rows = triage::summary_rows(&app.triage, summary, &app.files, &app.info.labels);
    // Notes are long (a folder, the problem and its fix): they wrap; other rows are cut.
    let width = usize::from(inner.width).saturating_sub(1).max(10);
    let mut lines: Vec<Line<'_>> = Vec::new();
    let mut selected_line = None;
    for (i, row) in rows.iter().enumerate() {
        let selected = matches!(row.kind, RowKind::Item(item) if Some(item) == popup.selected);
        let style = match row.kind {
            _ if selected => Style::default().fg(Color::Black).bg(pal::ACCENT),
            RowKind::Heading => Style::default().fg(pal::ACCENT).add_modifier(Modifier::BOLD),
            RowKind::Note => Style::default().fg(pal::WARN),
            RowKind::Text if i < 2 => Style::default().add_modifier(Modifier::BOLD),
            _ => Style::default(),
        };
        if selected {
            selected_line = Some(lines.len());
        }
        let chunks = if row.kind == RowKind::Note { wrap(&row.text, width) } else { vec![row.text.clone()] };
        for chunk in chunks {
            lines.push(Line::from(Span::styled(format!(" {chunk}"), style)));
        }
    }
    let h = usize::from(inner.height);
    let offset = selected_line.map_or(0, |s| s.saturating_sub(h.saturating_sub(1)));
    let visible: Vec<Line<'_>> = lines.into_iter().skip(offset).take(h).collect();
    frame.render_widget(Paragraph::new(visible), inner);
}

/// `text` in lines of at most `width` characters, broken at spaces where possible.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let (have, add) = (line.chars().count(), word.chars().count());
        if have > 0 && have + 1 + add > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
        // A word longer than a line is cut.
        while line.chars().count() > width {
            let head: String = line.chars().take(width).collect();
            line = line.chars().skip(width).collect();
            lines.push(head);
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn notes_wrap_at_spaces() {
        assert_eq!(wrap("one two three", 7), vec!["one two", "three"]);
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(wrap("", 4), vec![""]);
    }
}
