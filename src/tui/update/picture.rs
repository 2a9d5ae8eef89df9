//! The picture in the image pane: composing the overlay, heatmap, side-by-side and compare
//! views from the current image and map, and saving it.

use super::*;
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
    let overlay_of = |m: &ndarray::Array2<f32>| -> Arc<RgbImage> {
        render::overlay(&loaded.view, m.view(), app.colormap, app.alpha).map(Arc::new).unwrap_or_else(|_| view.clone())
    };
    let overlay = || -> Arc<RgbImage> { map.map_or_else(|| view.clone(), |m| overlay_of(&m.map)) };
    let mut captions = Vec::new();
    let mut note = None;
    let images = match app.view {
        ViewMode::Original => vec![view.clone()],
        ViewMode::Overlay => vec![overlay()],
        ViewMode::Compare => {
            let compare = map.and_then(|m| Some((m, m.compare.as_ref()?)));
            match compare {
                Some((m, cmp)) if app.compare_truth() == Some(cmp.truth) => {
                    captions = compare_captions(app, m, cmp, &loaded.scores.probabilities, loaded.scores.argmax());
                    vec![overlay_of(&m.map), overlay_of(&cmp.truth_map), overlay_of(&cmp.contrast)]
                }
                _ => {
                    note = Some(compare_unavailable(app).unwrap_or_else(|| "compare: computing the maps…".into()));
                    vec![overlay()]
                }
            }
        }
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
    app.picture =
        Some(Picture { id: app.picture_serial, images, captions, note, compose_ms: t0.elapsed().as_secs_f64() * 1e3 });
}

/// The compare view's three captions: the class (the prediction unless another class is
/// targeted), the true class, and their contrast.
fn compare_captions(
    app: &App,
    m: &ShownMap,
    cmp: &crate::tui::worker::CompareMaps,
    probabilities: &[f32],
    predicted: usize,
) -> Vec<Caption> {
    let labels = &app.info.labels;
    let p = |c: usize| probabilities.get(c).map_or(0.0, |p| p * 100.0);
    let role = if m.class == predicted { "predicted" } else { "target" };
    let detail = |text: String, status: MapStatus| match status {
        MapStatus::Ok => text,
        MapStatus::AllNegative => format!("{text} (no evidence)"),
        MapStatus::AllZero | MapStatus::Constant => format!("{text} (flat map)"),
        MapStatus::NotFinite => format!("{text} (NaN map)"),
    };
    let (class, truth) = (labels.name(m.class), labels.name(cmp.truth));
    vec![
        Caption { title: format!("{role} {:.1}%", p(m.class)), detail: detail(class.clone(), m.status) },
        Caption { title: format!("true {:.1}%", p(cmp.truth)), detail: detail(truth.clone(), cmp.truth_status) },
        Caption {
            title: format!("{role} − true"),
            detail: detail(format!("{class} over {truth}"), cmp.contrast_status),
        },
    ]
}

pub(super) fn save(app: &mut App, cmds: &mut Vec<Cmd>) {
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
