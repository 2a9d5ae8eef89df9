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
use std::num::NonZeroU16;
use std::str::FromStr;
use std::time::Duration;

use image::{DynamicImage, RgbImage};
use ratatui::buffer::{Buffer, CellDiffOption};
use ratatui::layout::{Rect, Size};
use ratatui::style::Color;
use ratatui::widgets::Widget;
use ratatui_image::picker::{Picker, ProtocolType};
use ratatui_image::protocol::Protocol;
use ratatui_image::{FontSize, Image, Resize};

use super::probe::Answers;
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
    /// kitty's graphics protocol with a direct placement at the cursor: `ratatui-image` draws
    /// kitty images with Unicode placeholders, which kitty has only from 0.28 (Debian ships
    /// 0.26.5, which then fills the pane with boxes); a direct placement works in every kitty
    /// version. `cell` is the cell size in pixels (width, height).
    KittyDirect {
        cell: (u16, u16),
    },
}

/// What the terminal is, as far as choosing a renderer goes.
#[derive(Debug, Clone, Default)]
pub struct TermInfo {
    /// The terminal's answers (`None`: not asked, e.g. `--graphics halfblocks` with `COLORTERM`).
    pub answers: Option<Answers>,
    /// The first frame waited this long for them.
    pub waited: Duration,
    pub colorterm: Option<String>,
    /// Inside tmux (`TMUX` set): graphics need passthrough, and tmux answers for itself.
    pub tmux: bool,
    /// The environment names an iTerm2-compatible terminal (`TERM_PROGRAM`, `LC_TERMINAL`).
    pub iterm2_env: bool,
    /// The window's size in cells and in pixels from `TIOCGWINSZ` (pixels 0 when unknown).
    pub cells: (u16, u16),
    pub pixels: (u16, u16),
}

impl TermInfo {
    /// The environment's part, read once.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let program = var("TERM_PROGRAM").unwrap_or_default();
        let iterm2_env = ["iTerm", "WezTerm", "mintty", "vscode", "Tabby", "Hyper", "rio", "WarpTerminal"]
            .iter()
            .any(|p| program.contains(p))
            || var("LC_TERMINAL").is_some_and(|t| t.contains("iTerm"));
        Self {
            colorterm: var("COLORTERM"),
            tmux: var("TMUX").is_some() || program == "tmux",
            iterm2_env,
            ..Self::default()
        }
    }

    /// Whether the terminal needs asking: for graphics, and for true colour when `COLORTERM`
    /// does not say so.
    pub fn needs_query(&self, graphics: Graphics) -> bool {
        graphics == Graphics::Auto || ColorDepth::from_env(self.colorterm.as_deref()) != ColorDepth::TrueColor
    }

    /// The cell size in pixels: the terminal's answer, else the window's pixels over its cells.
    fn cell_px(&self) -> Option<(u16, u16)> {
        let a = self.answers.as_ref();
        a.and_then(|a| a.cell_px).or_else(|| {
            let (px_w, px_h) = a.and_then(|a| a.window_px).unwrap_or(self.pixels);
            let (cols, rows) = self.cells;
            (px_w > 0 && px_h > 0 && cols > 0 && rows > 0 && px_w >= cols && px_h >= rows)
                .then(|| (px_w / cols, px_h / rows))
        })
    }
}

/// The fewest sixel colour registers worth drawing with: with 16 (a VT340's, or xterm set so)
/// a heatmap over a photo is a posterised blur, worse than 24-bit half-blocks.
pub const MIN_SIXEL_REGISTERS: u16 = 64;

impl Renderer {
    /// Decide from `--graphics` and what the terminal said; the second value says why, for the
    /// status bar (which protocol, which colours and how they were found, what was fallen back
    /// from).
    pub fn choose_for(graphics: Graphics, info: &TermInfo) -> (Self, String) {
        let answers = info.answers.clone().unwrap_or_default();
        let asked = info.answers.is_some();
        let (depth, colours) = if ColorDepth::from_env(info.colorterm.as_deref()) == ColorDepth::TrueColor {
            (ColorDepth::TrueColor, "24-bit colour (COLORTERM)")
        } else if answers.truecolor == Some(true) {
            (ColorDepth::TrueColor, "24-bit colour (asked)")
        } else if asked && !answers.complete {
            (ColorDepth::Ansi256, "256 colours")
        } else {
            (ColorDepth::Ansi256, "256 colours (no 24-bit)")
        };
        let silent = match (asked && !answers.complete, answers.garbage) {
            (false, _) => String::new(),
            (true, 0) if answers == Answers::default() => format!("; no answer in {} ms", info.waited.as_millis()),
            (true, 0) => format!("; partial answer in {} ms", info.waited.as_millis()),
            (true, n) => format!("; garbled answer ({n} bytes)"),
        };
        let cell = info.cell_px();
        let font = cell.unwrap_or((10, 20));
        let picker = |proto: ProtocolType| {
            #[allow(deprecated)] // the replacement queries the terminal itself, unbounded
            let mut p = Picker::from_fontsize(FontSize::new(font.0, font.1));
            p.set_protocol_type(proto);
            Self::Protocol(Box::new(p))
        };
        let kitty = || if info.tmux { picker(ProtocolType::Kitty) } else { Self::KittyDirect { cell: font } };
        let half = |why: &str| (Self::HalfBlocks(depth), format!("half-blocks, {colours}{why}{silent}"));
        let (renderer, name) = match graphics {
            Graphics::Halfblocks => return half(""),
            Graphics::Kitty => (kitty(), "kitty"),
            Graphics::Sixel => (picker(ProtocolType::Sixel), "sixel"),
            Graphics::Iterm2 => (picker(ProtocolType::Iterm2), "iTerm2"),
            Graphics::Auto => {
                let sixel_regs = answers.color_registers.filter(|&n| n < MIN_SIXEL_REGISTERS);
                if !answers.kitty && !answers.sixel && !info.iterm2_env {
                    return half("");
                }
                if cell.is_none() {
                    return half(" (graphics, but no cell size in pixels)");
                }
                if answers.kitty {
                    (kitty(), "kitty")
                } else if answers.sixel {
                    if let Some(n) = sixel_regs {
                        return half(&format!(" (sixel has only {n} colour registers)"));
                    }
                    (picker(ProtocolType::Sixel), "sixel")
                } else {
                    (picker(ProtocolType::Iterm2), "iTerm2")
                }
            }
        };
        let regs = match (&renderer, answers.color_registers) {
            (Self::Protocol(p), Some(n)) if p.protocol_type() == ProtocolType::Sixel => format!(" ({n} registers)"),
            _ => String::new(),
        };
        (renderer, format!("{name}{regs}, {colours}{silent}"))
    }

    /// The colours of half-blocks, and of text.
    pub fn depth(&self) -> ColorDepth {
        match self {
            Renderer::HalfBlocks(d) => *d,
            _ => ColorDepth::TrueColor,
        }
    }

    /// For the status bar.
    pub fn describe(&self) -> String {
        match self {
            Renderer::HalfBlocks(ColorDepth::TrueColor) => "half-blocks".into(),
            Renderer::HalfBlocks(ColorDepth::Ansi256) => "half-blocks (256 colours)".into(),
            Renderer::KittyDirect { .. } => "kitty".into(),
            Renderer::Protocol(p) => match p.protocol_type() {
                ProtocolType::Kitty => "kitty".into(),
                ProtocolType::Sixel => "sixel".into(),
                ProtocolType::Iterm2 => "iTerm2".into(),
                ProtocolType::Halfblocks => "half-blocks".into(),
            },
        }
    }
}

/// What a picture became for one area.
enum Converted {
    Cells(CellGrid),
    Protocol(Option<Protocol>),
    /// kitty direct placement: the escape data and its size in cells.
    Kitty(String, Size),
}

/// How the image pane was drawn last frame: graphics or cells, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Drawn {
    graphics: bool,
    rect: Rect,
}

/// Draws pictures, caching each conversion by (picture id, image index, area, graphics or not).
///
/// Graphics pixels (sixel, kitty, iTerm2) are not cells: ratatui's diff knows nothing of them,
/// and skips the cells under them. So whatever covered them, or what they covered, stays on
/// screen unless erased by hand (the help's text left over the image after Esc, in xterm). Two
/// rules keep the screen true: while a popup is open the picture is drawn as half-blocks (cells,
/// which the popup covers and uncovers like any text; a kitty image would even sit on top of
/// it); and whenever the pane changes between graphics and cells or moves, the last frame's
/// graphics are erased first (`ECH` over their cells for sixel and iTerm2, a delete command for
/// kitty), by a prefix written before anything else of the frame ([`ImageView::finish`]).
pub struct ImageView {
    pub renderer: Renderer,
    /// What the status bar says about the renderer (how it was chosen, what it fell back from).
    pub note: String,
    cache: HashMap<(u64, usize, Rect, bool), Converted>,
    cached_picture: u64,
    /// A popup covers the frame: draw cells.
    overlaid: bool,
    last: Option<Drawn>,
    this: Option<Drawn>,
}

/// The kitty image id camscope uses (one image at a time).
const KITTY_ID: u32 = 0xca5c;

impl ImageView {
    pub fn new(renderer: Renderer) -> Self {
        let note = renderer.describe();
        Self::with_note(renderer, note)
    }

    pub fn with_note(renderer: Renderer, note: String) -> Self {
        Self {
            renderer,
            note,
            cache: HashMap::new(),
            cached_picture: u64::MAX,
            overlaid: false,
            last: None,
            this: None,
        }
    }

    /// For the status bar.
    pub fn describe(&self) -> &str {
        &self.note
    }

    /// Draw with another renderer from the next frame on (the terminal's answers came late).
    /// What the last frame drew stays known, so the next frame erases it as it does when a
    /// popup closes over graphics.
    pub fn set_renderer(&mut self, renderer: Renderer, note: String) {
        self.renderer = renderer;
        self.note = note;
        self.cache.clear();
    }

    /// Whether a popup covers this frame; call before [`ImageView::render`].
    pub fn set_overlaid(&mut self, overlaid: bool) {
        self.overlaid = overlaid;
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
        let graphics = !matches!(self.renderer, Renderer::HalfBlocks(_)) && !self.overlaid;
        let renderer = &self.renderer;
        let converted = self.cache.entry((picture, index, area, graphics)).or_insert_with(|| match renderer {
            _ if !graphics => {
                Converted::Cells(cells::half_blocks(image, usize::from(area.width), usize::from(area.height)))
            }
            Renderer::KittyDirect { cell } => {
                let (data, size) = kitty_direct(image, area, *cell);
                Converted::Kitty(data, size)
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
            Renderer::HalfBlocks(_) => unreachable!("half-blocks are cells"),
        });
        let centred = |size: Size| {
            let x = area.x + area.width.saturating_sub(size.width) / 2;
            let y = area.y + area.height.saturating_sub(size.height) / 2;
            Rect::new(x, y, size.width.min(area.width), size.height.min(area.height))
        };
        let drawn = match converted {
            Converted::Cells(grid) => {
                HalfBlockImage { grid, depth: renderer.depth() }.render(area, buf);
                area
            }
            Converted::Protocol(Some(p)) => {
                let at = centred(p.size());
                Image::new(p).allow_clipping(true).render(at, buf);
                at
            }
            Converted::Kitty(data, size) => {
                let at = centred(*size);
                place(data, at, buf);
                at
            }
            Converted::Protocol(None) => return,
        };
        self.this = Some(Drawn { graphics, rect: drawn });
    }

    /// End the frame: when last frame's graphics are gone or moved, erase them, by a prefix on
    /// the frame's first cell (ratatui writes changed cells in order, so it runs first; it ends
    /// by moving the cursor back to that cell).
    pub fn finish(&mut self, buf: &mut Buffer) {
        let this = self.this.take();
        let last = std::mem::replace(&mut self.last, this);
        let Some(last) = last.filter(|l| l.graphics && Some(*l) != this) else { return };
        let mut prefix = String::new();
        if matches!(self.renderer, Renderer::KittyDirect { .. }) {
            prefix += &format!("\x1b_Ga=d,d=i,i={KITTY_ID},q=2\x1b\\");
        } else {
            for y in last.rect.top()..last.rect.bottom() {
                prefix += &format!("\x1b[{};{}H\x1b[{}X", y + 1, last.rect.x + 1, last.rect.width);
            }
        }
        let at = (buf.area.x, buf.area.y);
        let Some(first) = buf.cell_mut(at) else { return };
        let symbol = format!("{prefix}\x1b[{};{}H{}", at.1 + 1, at.0 + 1, first.symbol());
        first.set_symbol(&symbol).set_diff_option(CellDiffOption::ForcedWidth(NonZeroU16::MIN));
    }
}

/// Put escape data in the first cell of `at` and tell ratatui to leave the rest of it alone.
fn place(data: &str, at: Rect, buf: &mut Buffer) {
    for y in at.top()..at.bottom() {
        for x in at.left()..at.right() {
            if let Some(cell) = buf.cell_mut((x, y)) {
                if (x, y) == (at.x, at.y) {
                    cell.set_symbol(data).set_diff_option(CellDiffOption::ForcedWidth(NonZeroU16::MIN));
                } else {
                    cell.set_diff_option(CellDiffOption::Skip);
                }
            }
        }
    }
}

/// The image scaled to fit `area` (cells of `cell` pixels), as a kitty transmit-and-place
/// command at the cursor (`C=1`: the cursor stays), raw RGB in base64 chunks of 4096 bytes, and
/// its size in cells. The old image (and its placement) is deleted first.
fn kitty_direct(image: &RgbImage, area: Rect, cell: (u16, u16)) -> (String, Size) {
    let (cw, ch) = (u32::from(cell.0.max(1)), u32::from(cell.1.max(1)));
    let (aw, ah) = (u32::from(area.width) * cw, u32::from(area.height) * ch);
    let scale = (f64::from(aw) / f64::from(image.width().max(1))).min(f64::from(ah) / f64::from(image.height().max(1)));
    let w = ((f64::from(image.width()) * scale) as u32).clamp(1, aw);
    let h = ((f64::from(image.height()) * scale) as u32).clamp(1, ah);
    let img = image::imageops::resize(image, w, h, image::imageops::FilterType::Triangle);
    let b64 = base64(img.as_raw());
    let mut out = format!("\x1b_Ga=d,d=i,i={KITTY_ID},q=2\x1b\\");
    let chunks: Vec<&[u8]> = b64.as_bytes().chunks(4096).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let more = u8::from(i + 1 < chunks.len());
        let chunk = std::str::from_utf8(chunk).expect("base64 is ASCII");
        if i == 0 {
            out += &format!("\x1b_Ga=T,f=24,s={w},v={h},i={KITTY_ID},p=1,C=1,q=2,m={more};{chunk}\x1b\\");
        } else {
            out += &format!("\x1b_Gm={more};{chunk}\x1b\\");
        }
    }
    let size = Size::new(w.div_ceil(cw) as u16, h.div_ceil(ch) as u16);
    (out, size)
}

/// Standard base64 with padding (the kitty protocol's payload encoding).
fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
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
