//! Terminal rendering as plain data: an image becomes rows of half-block cells, without depending on any terminal
//! library (the TUI turns [`HalfBlock`]s into ratatui cells, the CLI into escape codes).
//!
//! A terminal cell is about twice as tall as it is wide, so one cell shows two square pixels stacked: the upper one
//! as the foreground of `▀` (U+2580), the lower one as the background. An area of `cols × rows` cells is therefore
//! a `cols × 2·rows` pixel grid; the image is fitted into it keeping its aspect ratio (area-averaged when shrunk,
//! blocky when enlarged) and centred. Cells the image does not cover have no colour.

use image::RgbImage;

/// An RGB colour.
pub type Rgb = [u8; 3];

/// One terminal cell: the colours of its upper and lower pixel (`None`: not covered by the image).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HalfBlock {
    pub top: Option<Rgb>,
    pub bottom: Option<Rgb>,
}

impl HalfBlock {
    /// What to draw: the symbol, its foreground colour and its background colour (`None`: the terminal's default).
    /// Both pixels: `▀` over the lower colour; only the lower: `▄`; none: a space.
    pub fn glyph(&self) -> (char, Option<Rgb>, Option<Rgb>) {
        match (self.top, self.bottom) {
            (Some(t), b) => ('▀', Some(t), b),
            (None, Some(b)) => ('▄', Some(b), None),
            (None, None) => (' ', None, None),
        }
    }
}

/// A `cols × rows` block of cells holding an image, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellGrid {
    pub cols: usize,
    pub rows: usize,
    pub cells: Vec<HalfBlock>,
    /// Where the image lies in the `cols × 2·rows` pixel grid: left, top, width, height.
    pub image_rect: (usize, usize, usize, usize),
}

impl CellGrid {
    /// Cell row `r` (0 = top).
    pub fn row(&self, r: usize) -> &[HalfBlock] {
        &self.cells[r * self.cols..(r + 1) * self.cols]
    }
}

/// The largest size `(w, h)` with the aspect ratio of `width × height` that fits `cols × 2·rows` pixels (at least
/// 1×1 when the area is not empty).
pub fn fit(width: u32, height: u32, cols: usize, rows: usize) -> (usize, usize) {
    let (gw, gh) = (cols, 2 * rows);
    if width == 0 || height == 0 || gw == 0 || gh == 0 {
        return (0, 0);
    }
    let scale = (gw as f64 / f64::from(width)).min(gh as f64 / f64::from(height));
    let w = ((f64::from(width) * scale).round() as usize).clamp(1, gw);
    let h = ((f64::from(height) * scale).round() as usize).clamp(1, gh);
    (w, h)
}

/// Area-average resampling to `w × h`: each output pixel is the mean of the source area it covers (fractional
/// pixels weighted by their coverage), rounded. Enlarging repeats pixels (and blends at fractional borders).
pub fn area_resize(img: &RgbImage, w: usize, h: usize) -> RgbImage {
    let xs = area_weights(img.width() as usize, w);
    let ys = area_weights(img.height() as usize, h);
    let mut out = RgbImage::new(w as u32, h as u32);
    for (oy, ytaps) in ys.iter().enumerate() {
        for (ox, xtaps) in xs.iter().enumerate() {
            let mut acc = [0.0f64; 3];
            for &(sy, wy) in ytaps {
                for &(sx, wx) in xtaps {
                    let p = img.get_pixel(sx as u32, sy as u32).0;
                    for c in 0..3 {
                        acc[c] += wy * wx * f64::from(p[c]);
                    }
                }
            }
            out.put_pixel(ox as u32, oy as u32, image::Rgb(acc.map(|v| v.round().clamp(0.0, 255.0) as u8)));
        }
    }
    out
}

/// For each of `dst` output pixels, the source pixels it covers and their weights (summing to 1).
fn area_weights(src: usize, dst: usize) -> Vec<Vec<(usize, f64)>> {
    let scale = src as f64 / dst as f64;
    (0..dst)
        .map(|d| {
            let (lo, hi) = (d as f64 * scale, (d + 1) as f64 * scale);
            let mut taps = Vec::new();
            let mut s = lo.floor() as usize;
            while (s as f64) < hi && s < src {
                let cover = (hi.min(s as f64 + 1.0) - lo.max(s as f64)).max(0.0);
                if cover > 0.0 {
                    taps.push((s, cover / scale));
                }
                s += 1;
            }
            taps
        })
        .collect()
}

/// The image fitted into `cols × rows` half-block cells, centred.
pub fn half_blocks(img: &RgbImage, cols: usize, rows: usize) -> CellGrid {
    let (w, h) = fit(img.width(), img.height(), cols, rows);
    let small = area_resize(img, w, h);
    let (left, top) = ((cols - w) / 2, (2 * rows - h) / 2);
    let pixel = |x: usize, y: usize| -> Option<Rgb> {
        let (ix, iy) = (x.checked_sub(left)?, y.checked_sub(top)?);
        (ix < w && iy < h).then(|| small.get_pixel(ix as u32, iy as u32).0)
    };
    let mut cells = Vec::with_capacity(cols * rows);
    for r in 0..rows {
        for c in 0..cols {
            cells.push(HalfBlock { top: pixel(c, 2 * r), bottom: pixel(c, 2 * r + 1) });
        }
    }
    CellGrid { cols, rows, cells, image_rect: (left, top, w, h) }
}

/// The xterm 256-colour palette entry nearest to `rgb` (squared RGB distance) among the 6×6×6 colour cube (16–231)
/// and the grey ramp (232–255); entries 0–15 are left out because terminals redefine them. For terminals without
/// true colour.
pub fn xterm256(rgb: Rgb) -> u8 {
    const LEVELS: [u8; 6] = [0, 95, 135, 175, 215, 255];
    let nearest_level =
        |v: u8| (0..6).min_by_key(|&i| (i32::from(LEVELS[i]) - i32::from(v)).abs()).expect("six levels");
    let dist = |a: Rgb, b: Rgb| -> i32 { (0..3).map(|c| (i32::from(a[c]) - i32::from(b[c])).pow(2)).sum() };
    let idx = rgb.map(nearest_level);
    let cube = [LEVELS[idx[0]], LEVELS[idx[1]], LEVELS[idx[2]]];
    let cube_index = 16 + 36 * idx[0] + 6 * idx[1] + idx[2];
    let (grey_index, grey) =
        (0..24).map(|k| (232 + k, [8 + 10 * k as u8; 3])).min_by_key(|&(_, g)| dist(rgb, g)).expect("24 greys");
    // Ties go to the cube (its colours are the ones terminals agree on most).
    if dist(rgb, grey) < dist(rgb, cube) { grey_index as u8 } else { cube_index as u8 }
}

/// The RGB value of an xterm palette entry 16–255 (0–15 are terminal-defined; they map to the cube's black).
pub fn xterm256_rgb(index: u8) -> Rgb {
    const LEVELS: [u8; 6] = [0, 95, 135, 175, 215, 255];
    match index {
        0..=15 => [0, 0, 0],
        16..=231 => {
            let i = usize::from(index - 16);
            [LEVELS[i / 36], LEVELS[(i / 6) % 6], LEVELS[i % 6]]
        }
        _ => [8 + 10 * (index - 232); 3],
    }
}

#[cfg(test)]
mod tests {
    use image::Rgb as Px;

    use super::*;

    #[test]
    fn two_pixels_per_cell_upper_is_foreground() {
        let img = RgbImage::from_fn(2, 2, |x, y| Px([x as u8 * 100, y as u8 * 100, 7]));
        let g = half_blocks(&img, 2, 1);
        assert_eq!(g.image_rect, (0, 0, 2, 2));
        assert_eq!(g.row(0)[0], HalfBlock { top: Some([0, 0, 7]), bottom: Some([0, 100, 7]) });
        assert_eq!(g.row(0)[1].glyph(), ('▀', Some([100, 0, 7]), Some([100, 100, 7])));
    }

    #[test]
    fn shrinking_averages_areas() {
        // 4x4 -> 2 cols x 1 row = 2x2 pixels: each the mean of a 2x2 block.
        let img = RgbImage::from_fn(4, 4, |x, y| Px([(x + 4 * y) as u8 * 10, 0, 255]));
        let g = half_blocks(&img, 2, 1);
        // Top-left block: 0, 10, 40, 50 -> 25; top-right: 20, 30, 60, 70 -> 45; bottom-left 80..130 -> 105.
        assert_eq!(g.row(0)[0].top, Some([25, 0, 255]));
        assert_eq!(g.row(0)[1].top, Some([45, 0, 255]));
        assert_eq!(g.row(0)[0].bottom, Some([105, 0, 255]));
        // Fractional coverage: 3 pixels -> 2: [0, 90, 180] -> (0 + 0.5·90)/1.5 = 30, (0.5·90 + 180)/1.5 = 150.
        let img = RgbImage::from_fn(3, 1, |x, _| Px([x as u8 * 90; 3]));
        let s = area_resize(&img, 2, 1);
        assert_eq!((s.get_pixel(0, 0).0, s.get_pixel(1, 0).0), ([30; 3], [150; 3]));
    }

    #[test]
    fn aspect_ratio_is_kept_and_the_image_centred() {
        // A wide 10x2 image in 10 cols x 5 rows (10x10 pixels): stays 10x2, pixel rows 4 and 5 = cell row 2.
        let img = RgbImage::from_pixel(10, 2, Px([9, 9, 9]));
        let g = half_blocks(&img, 10, 5);
        assert_eq!(g.image_rect, (0, 4, 10, 2));
        assert!(g.row(2).iter().all(|c| c.top == Some([9; 3]) && c.bottom == Some([9; 3])));
        assert!([0, 1, 3, 4].iter().all(|&r| g.row(r).iter().all(|c| c.glyph() == (' ', None, None))));
        // A tall 1x4 image in 5 cols x 1 row (5x2 pixels): 1x2 (shrunk to the height), centred at column 2.
        let g = half_blocks(&RgbImage::from_pixel(1, 4, Px([1, 2, 3])), 5, 1);
        assert_eq!(g.image_rect, (2, 0, 1, 2));
        assert_eq!(g.row(0)[2].glyph(), ('▀', Some([1, 2, 3]), Some([1, 2, 3])));
        assert_eq!(g.row(0)[1].glyph().0, ' ');
        // Odd vertical offset: a 4x1 image in 4 cols x 2 rows starts at pixel row 1, the lower half of row 0.
        let g = half_blocks(&RgbImage::from_pixel(4, 1, Px([5, 5, 5])), 4, 2);
        assert_eq!(g.image_rect, (0, 1, 4, 1));
        assert_eq!(g.row(0)[0].glyph(), ('▄', Some([5; 3]), None));
        assert_eq!(g.row(1)[0].glyph(), (' ', None, None));
    }

    #[test]
    fn small_images_are_enlarged_and_empty_areas_are_empty() {
        // A 7x7 map in 14 cols x 7 rows (14x14 pixels): each pixel becomes a 2x2 block.
        let img = RgbImage::from_fn(7, 7, |x, y| Px([x as u8, y as u8, 0]));
        let g = half_blocks(&img, 14, 7);
        assert_eq!(g.image_rect, (0, 0, 14, 14));
        assert_eq!(g.row(3)[5], HalfBlock { top: Some([2, 3, 0]), bottom: Some([2, 3, 0]) });
        assert_eq!(fit(10, 10, 0, 5), (0, 0));
        let g = half_blocks(&img, 0, 0);
        assert!(g.cells.is_empty());
    }

    #[test]
    fn xterm_palette_on_known_colours() {
        assert_eq!(xterm256([0, 0, 0]), 16);
        assert_eq!(xterm256([255, 255, 255]), 231);
        assert_eq!(xterm256([255, 0, 0]), 196);
        assert_eq!(xterm256([0, 255, 0]), 46);
        assert_eq!(xterm256([0, 0, 255]), 21);
        assert_eq!(xterm256([95, 135, 175]), 67);
        assert_eq!(xterm256([128, 128, 128]), 244);
        assert_eq!(xterm256([8, 8, 8]), 232);
        assert_eq!(xterm256([238, 238, 238]), 255);
        assert_eq!(xterm256([100, 100, 100]), 241);
        // Near-misses snap to the nearest cube level per channel.
        assert_eq!(xterm256([250, 130, 10]), 208);
        for i in 16..=255u8 {
            assert_eq!(xterm256(xterm256_rgb(i)), i, "palette entry {i} maps to itself");
        }
    }
}
