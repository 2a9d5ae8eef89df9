//! The popups drawn over the panes: help (from the key table), class search, layer picker.

use super::*;

pub(super) fn draw_help(frame: &mut Frame<'_>, app: &App, area: Rect) {
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

pub(super) fn draw_search(frame: &mut Frame<'_>, app: &App, area: Rect) {
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

pub(super) fn draw_layers(frame: &mut Frame<'_>, app: &App, area: Rect) {
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
