//! Images inside the ratatui layout: Unicode half-blocks everywhere (camscope's own
//! [`render::cells`](crate::render::cells), quantised to the xterm palette on 256-colour
//! terminals), or a graphics protocol (kitty, sixel, iTerm2, through `ratatui-image`) when the
//! terminal answers that it has one or `--graphics` insists.
//!
//! Half-blocks are the default fallback because they work over any SSH session and in tmux,
//! where graphics need `allow-passthrough` (see the README). Conversions are cached per picture
//! and area, so redrawing an unchanged frame costs a buffer copy.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::str::FromStr;
use std::time::{Duration, Instant};

use image::{DynamicImage, RgbImage};
use ratatui::buffer::Buffer;
use ratatui::layout::{Rect, Size};
use ratatui::style::Color;
use ratatui::widgets::Widget;
use ratatui_image::picker::cap_parser::QueryStdioOptions;
use ratatui_image::picker::{Picker, ProtocolType};
use ratatui_image::protocol::Protocol;
use ratatui_image::{Image, Resize};

use crate::render::cells::{self, CellGrid};

/// `--graphics`: how images are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Graphics {
    /// Ask the terminal; half-blocks unless it reports kitty or sixel (or the environment names
    /// an iTerm2-compatible terminal).
    #[default]
    Auto,
    Kitty,
    Sixel,
    Iterm2,
    Halfblocks,
}

impl FromStr for Graphics {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "kitty" => Ok(Self::Kitty),
            "sixel" => Ok(Self::Sixel),
            "iterm2" | "iterm" => Ok(Self::Iterm2),
            "halfblocks" | "half-blocks" | "blocks" => Ok(Self::Halfblocks),
            other => Err(format!("unknown graphics `{other}`; use auto, kitty, sixel, iterm2 or halfblocks")),
        }
    }
}

impl fmt::Display for Graphics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Graphics::Auto => "auto",
            Graphics::Kitty => "kitty",
            Graphics::Sixel => "sixel",
            Graphics::Iterm2 => "iterm2",
            Graphics::Halfblocks => "halfblocks",
        })
    }
}

/// Colours a terminal can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorDepth {
    TrueColor,
    /// The xterm 256-colour palette.
    Ansi256,
}

impl ColorDepth {
    /// True colour when `COLORTERM` says so (`truecolor` or `24bit`, the de facto convention,
    /// forwarded by SSH and tmux when set up for it); the 256-colour palette otherwise.
    pub fn from_env(colorterm: Option<&str>) -> Self {
        match colorterm.map(str::to_ascii_lowercase).as_deref() {
            Some("truecolor" | "24bit") => Self::TrueColor,
            _ => Self::Ansi256,
        }
    }

    fn color(self, rgb: cells::Rgb) -> Color {
        match self {
            ColorDepth::TrueColor => Color::Rgb(rgb[0], rgb[1], rgb[2]),
            ColorDepth::Ansi256 => Color::Indexed(cells::xterm256(rgb)),
        }
    }
}

/// How pictures are drawn, decided once at start.
#[derive(Debug, Clone)]
pub enum Renderer {
    HalfBlocks(ColorDepth),
    Protocol(Box<Picker>),
}

impl Renderer {
    /// Decide from `--graphics`, asking the terminal (through stdin/stdout, in raw mode, before
    /// any event is read) unless half-blocks were asked for.
    pub fn detect(graphics: Graphics, depth: ColorDepth) -> Self {
        if graphics == Graphics::Halfblocks {
            return Self::HalfBlocks(depth);
        }
        let t0 = Instant::now();
        let options = QueryStdioOptions { timeout: QUERY_TIMEOUT, ..QueryStdioOptions::default() };
        let picker = Picker::from_query_stdio_with_options(options).ok();
        if t0.elapsed() >= QUERY_TIMEOUT {
            release_query_reader();
        }
        match (choose(graphics, picker.as_ref().map(Picker::protocol_type)), picker) {
            (Some(proto), Some(mut p)) => {
                p.set_protocol_type(proto);
                Self::Protocol(Box::new(p))
            }
            _ => Self::HalfBlocks(depth),
        }
    }

    /// For the status bar.
    pub fn describe(&self) -> String {
        match self {
            Renderer::HalfBlocks(ColorDepth::TrueColor) => "half-blocks".into(),
            Renderer::HalfBlocks(ColorDepth::Ansi256) => "half-blocks (256 colours)".into(),
            Renderer::Protocol(p) => match p.protocol_type() {
                ProtocolType::Kitty => "kitty".into(),
                ProtocolType::Sixel => "sixel".into(),
                ProtocolType::Iterm2 => "iTerm2".into(),
                ProtocolType::Halfblocks => "half-blocks".into(),
            },
        }
    }
}

/// How long the terminal may take to answer the graphics query.
const QUERY_TIMEOUT: Duration = Duration::from_millis(1000);

/// After an unanswered query, `ratatui-image`'s reader thread stays blocked on stdin and would
/// swallow the user's first key. Inside tmux its query travels through passthrough, which only
/// an attached outer terminal answers; a plain status request is answered by tmux itself (and by
/// any terminal), so the reader gets its end marker and stops before camscope reads events.
fn release_query_reader() {
    let mut out = std::io::stdout();
    let _ = out.write_all(b"\x1b[5n");
    let _ = out.flush();
    std::thread::sleep(Duration::from_millis(150));
}

/// The protocol to use given `--graphics` and what the terminal reported (`None`: half-blocks).
pub fn choose(graphics: Graphics, detected: Option<ProtocolType>) -> Option<ProtocolType> {
    match graphics {
        Graphics::Halfblocks => None,
        Graphics::Kitty => Some(ProtocolType::Kitty),
        Graphics::Sixel => Some(ProtocolType::Sixel),
        Graphics::Iterm2 => Some(ProtocolType::Iterm2),
        Graphics::Auto => detected.filter(|&p| p != ProtocolType::Halfblocks),
    }
}

/// What a picture became for one area.
enum Converted {
    Cells(CellGrid),
    Protocol(Option<Protocol>),
}

/// Draws pictures, caching each conversion by (picture id, image index, area).
pub struct ImageView {
    pub renderer: Renderer,
    cache: HashMap<(u64, usize, Rect), Converted>,
    cached_picture: u64,
}

impl ImageView {
    pub fn new(renderer: Renderer) -> Self {
        Self { renderer, cache: HashMap::new(), cached_picture: u64::MAX }
    }

    /// Draw `image` (image `index` of picture `picture`) fitted and centred in `area`.
    pub fn render(&mut self, buf: &mut Buffer, area: Rect, picture: u64, index: usize, image: &RgbImage) {
        if area.is_empty() {
            return;
        }
        if picture != self.cached_picture {
            self.cache.clear();
            self.cached_picture = picture;
        }
        let renderer = &self.renderer;
        let converted = self.cache.entry((picture, index, area)).or_insert_with(|| match renderer {
            Renderer::HalfBlocks(_) => {
                Converted::Cells(cells::half_blocks(image, usize::from(area.width), usize::from(area.height)))
            }
            Renderer::Protocol(picker) => Converted::Protocol(
                picker
                    .new_protocol(
                        DynamicImage::ImageRgb8(image.clone()),
                        Size::new(area.width, area.height),
                        Resize::Scale(None),
                    )
                    .ok(),
            ),
        });
        match (converted, renderer) {
            (Converted::Cells(grid), Renderer::HalfBlocks(depth)) => {
                HalfBlockImage { grid, depth: *depth }.render(area, buf)
            }
            (Converted::Protocol(Some(p)), _) => {
                let size = p.size();
                let x = area.x + area.width.saturating_sub(size.width) / 2;
                let y = area.y + area.height.saturating_sub(size.height) / 2;
                let at = Rect::new(x, y, size.width.min(area.width), size.height.min(area.height));
                Image::new(p).allow_clipping(true).render(at, buf);
            }
            _ => {}
        }
    }
}

/// A [`CellGrid`] as a ratatui widget: `▀`/`▄` with the pixel colours as foreground and
/// background; uncovered cells are left as they are.
pub struct HalfBlockImage<'a> {
    pub grid: &'a CellGrid,
    pub depth: ColorDepth,
}

impl Widget for HalfBlockImage<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        for r in 0..self.grid.rows.min(usize::from(area.height)) {
            for (c, cell) in self.grid.row(r).iter().enumerate().take(usize::from(area.width)) {
                let (symbol, fg, bg) = cell.glyph();
                if fg.is_none() && bg.is_none() {
                    continue;
                }
                if let Some(out) = buf.cell_mut((area.x + c as u16, area.y + r as u16)) {
                    let mut s = [0u8; 4];
                    out.set_symbol(symbol.encode_utf8(&mut s));
                    out.set_fg(fg.map_or(Color::Reset, |rgb| self.depth.color(rgb)));
                    out.set_bg(bg.map_or(Color::Reset, |rgb| self.depth.color(rgb)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphics_names_parse() {
        assert_eq!("auto".parse::<Graphics>(), Ok(Graphics::Auto));
        assert_eq!("Kitty".parse::<Graphics>(), Ok(Graphics::Kitty));
        assert_eq!("half-blocks".parse::<Graphics>(), Ok(Graphics::Halfblocks));
        assert!("ascii".parse::<Graphics>().unwrap_err().contains("use auto, kitty"));
        for g in [Graphics::Auto, Graphics::Kitty, Graphics::Sixel, Graphics::Iterm2, Graphics::Halfblocks] {
            assert_eq!(g.to_string().parse::<Graphics>(), Ok(g));
        }
    }

    #[test]
    fn forced_protocols_win_and_auto_follows_the_terminal() {
        assert_eq!(choose(Graphics::Sixel, None), Some(ProtocolType::Sixel));
        assert_eq!(choose(Graphics::Halfblocks, Some(ProtocolType::Kitty)), None);
        assert_eq!(choose(Graphics::Auto, Some(ProtocolType::Kitty)), Some(ProtocolType::Kitty));
        assert_eq!(choose(Graphics::Auto, Some(ProtocolType::Halfblocks)), None);
        assert_eq!(choose(Graphics::Auto, None), None);
    }

    #[test]
    fn colour_depth_from_colorterm() {
        assert_eq!(ColorDepth::from_env(Some("truecolor")), ColorDepth::TrueColor);
        assert_eq!(ColorDepth::from_env(Some("24bit")), ColorDepth::TrueColor);
        assert_eq!(ColorDepth::from_env(None), ColorDepth::Ansi256);
        assert_eq!(ColorDepth::from_env(Some("")), ColorDepth::Ansi256);
    }

    #[test]
    fn half_blocks_fill_the_buffer_with_pixel_colours() {
        let img = RgbImage::from_fn(2, 2, |x, _| image::Rgb([x as u8 * 255, 0, 0]));
        let mut buf = Buffer::empty(Rect::new(0, 0, 4, 1));
        let mut view = ImageView::new(Renderer::HalfBlocks(ColorDepth::TrueColor));
        view.render(&mut buf, Rect::new(1, 0, 2, 1), 1, 0, &img);
        let cell = &buf[(1, 0)];
        assert_eq!((cell.symbol(), cell.fg, cell.bg), ("▀", Color::Rgb(0, 0, 0), Color::Rgb(0, 0, 0)));
        assert_eq!(buf[(2, 0)].fg, Color::Rgb(255, 0, 0));
        assert_eq!(buf[(0, 0)].symbol(), " ", "outside the area nothing is drawn");
        let mut buf = Buffer::empty(Rect::new(0, 0, 2, 1));
        let mut view = ImageView::new(Renderer::HalfBlocks(ColorDepth::Ansi256));
        view.render(&mut buf, Rect::new(0, 0, 2, 1), 1, 0, &img);
        assert_eq!(buf[(1, 0)].fg, Color::Indexed(196));
    }

    /// The graphics protocols reach the frame buffer: the escape data in the first cell of the
    /// centred image, the cells under it left for the terminal. No terminal here speaks them,
    /// so this is as far as they are tested (see the README). `Picker` reads `TERM` and
    /// `TERM_PROGRAM`: inside tmux it wraps the data in passthrough and runs `tmux set` on the
    /// user's server. So the test runs itself again in a child process with a plain terminal's
    /// environment (tmux's and screen's variables removed), wherever it is started, and checks
    /// that the child really ran it.
    #[test]
    fn protocols_put_their_escape_data_in_the_buffer() {
        const CHILD: &str = "CAMSCOPE_TEST_PLAIN_TERMINAL";
        if std::env::var_os(CHILD).is_none() {
            let name = format!(
                "{}::protocols_put_their_escape_data_in_the_buffer",
                module_path!().split_once("::").expect("crate::module path").1
            );
            let out = std::process::Command::new(std::env::current_exe().expect("the test binary"))
                .args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
                .env(CHILD, "1")
                .env("TERM", "xterm-256color")
                .env_remove("TERM_PROGRAM")
                .env_remove("TMUX")
                .env_remove("STY")
                .output()
                .expect("run the test binary");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let report = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success(), "in a plain terminal's environment: {report}");
            assert!(stdout.contains("1 passed"), "the child ran no test: {report}");
            return;
        }
        assert_eq!(std::env::var("TERM").as_deref(), Ok("xterm-256color"));
        assert!(std::env::var_os("TMUX").is_none() && std::env::var_os("TERM_PROGRAM").is_none());
        let img = RgbImage::from_fn(40, 40, |x, y| image::Rgb([x as u8 * 6, y as u8 * 6, 128]));
        for (proto, prefix) in
            [(ProtocolType::Sixel, "\x1bP"), (ProtocolType::Kitty, "\x1b_G"), (ProtocolType::Iterm2, "\x1b]1337;")]
        {
            let mut picker = Picker::halfblocks();
            picker.set_protocol_type(proto);
            let mut view = ImageView::new(Renderer::Protocol(Box::new(picker)));
            let area = Rect::new(0, 0, 30, 10);
            let mut buf = Buffer::empty(area);
            view.render(&mut buf, area, 1, 0, &img);
            let first = (0..10).flat_map(|y| (0..30).map(move |x| (x, y))).find(|&p| buf[p].symbol().len() > 4);
            let (x, y) = first.unwrap_or_else(|| panic!("{proto:?}: no escape data in the buffer"));
            let data = buf[(x, y)].symbol();
            assert!(data.contains(prefix), "{proto:?}: {:?}", &data[..12]);
            assert!(!data.contains("tmux;"), "{proto:?}: wrapped in tmux passthrough outside tmux");
            // Scaled up to the area's height (10 rows of 20-pixel cells: 200x200 pixels, 20 columns of
            // 10 pixels), centred in its 30 columns.
            assert_eq!((x, y), (5, 0), "{proto:?}");
        }
    }
}
