//! The classes pane: the top-k classes with their probabilities and bars, the target marked.

use super::*;

pub(super) fn draw_classes(frame: &mut Frame<'_>, app: &App, area: Rect) {
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
