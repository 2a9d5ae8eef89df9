//! The image pane: the picture (half-blocks or terminal graphics through [`ImageView`]), its
//! captions, and what to show while it is computed or when it failed.

use super::*;

pub(super) fn draw_image(frame: &mut Frame<'_>, app: &App, area: Rect, images: &mut ImageView) {
    let mut title = vec![Span::raw(" ")];
    if let Some(c) = &app.current {
        title.push(Span::styled(
            crate::tui::state::display_name(&app.settings.root, &c.path),
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
