//! The status bar: model, layer, method, provider, graphics, timings, the scan's progress and
//! messages.

use super::*;

pub(super) fn draw_status(frame: &mut Frame<'_>, app: &App, area: Rect, images: &ImageView) {
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
