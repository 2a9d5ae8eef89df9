//! Issue 13 item 1: the inspector in real graphics terminals under a real X server (Xvfb):
//! xterm with sixel (`-ti vt340`) and kitty (its graphics protocol, Mesa's software OpenGL),
//! read back from screenshots (`import -window root`), driven by real key events (`xdotool`).
//!
//! Checked from the pixels: the overlay is drawn at full resolution (far more colour changes
//! along a pixel row than half-blocks of that cell size can make), it changes with the class
//! and the image, nothing stale remains after a popup opens and closes or the window is
//! resized, and text colours keep their contrast on a white and a black background. From the
//! trace: which protocol auto-detection chose, and that a terminal with 16 sixel colour
//! registers falls back to half-blocks and says so.
//!
//! Without Xvfb, xterm, kitty, ImageMagick or xdotool the tests print a loud SKIPPED line; with
//! `CAMSCOPE_REQUIRE_GRAPHICS=1` (scripts/test sets it after installing them) they fail instead.
//! Every process started is killed by a guard, on success and failure alike.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use image::RgbImage;

/// How long the first map may take (debug binary, loaded 2-core machine).
const FIRST_MAP: Duration = Duration::from_secs(120);
/// How long a key's effect may take to reach the screen.
const SETTLE: Duration = Duration::from_millis(1500);

const COLS: u16 = 140;
const ROWS: u16 = 45;

/// The tools, or why the test cannot run.
fn tools() -> Result<(), String> {
    let missing: Vec<&str> = ["Xvfb", "xterm", "kitty", "import", "xdotool", "xwininfo", "python3"]
        .into_iter()
        .filter(|t| {
            !Command::new("sh").args(["-c", &format!("command -v {t}")]).output().is_ok_and(|o| o.status.success())
        })
        .collect();
    if missing.is_empty() { Ok(()) } else { Err(format!("missing {}", missing.join(", "))) }
}

/// False (after a loud message) when the tools are missing and not required.
fn can_run(test: &str) -> bool {
    match tools() {
        Ok(()) => true,
        Err(why) if std::env::var_os("CAMSCOPE_REQUIRE_GRAPHICS").is_some() => {
            panic!(
                "{test}: {why}; scripts/test installs them (apt-get install xvfb xterm kitty imagemagick xdotool x11-utils python3)"
            )
        }
        Err(why) => {
            eprintln!(
                "\n*** SKIPPED {test}: {why} (apt-get install xvfb xterm kitty imagemagick xdotool x11-utils python3) ***\n"
            );
            false
        }
    }
}

/// Kills what it started (the whole process group) when dropped.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in self.0.iter_mut().rev() {
            // SAFETY: signalling a process group this test created.
            unsafe {
                libc::kill(-(c.id() as i32), libc::SIGKILL);
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn own_group(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null())
}

/// An X server on a free display, and the terminal on it.
struct Screen {
    display: String,
    dir: tempfile::TempDir,
    procs: Procs,
}

impl Screen {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // Several Xvfb starting at once on a fresh machine race to create the socket folder,
        // and the losers exit ("Cannot establish any listening sockets"): make it first.
        let sockets = Path::new("/tmp/.X11-unix");
        if std::fs::create_dir(sockets).is_ok() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(sockets, std::fs::Permissions::from_mode(0o1777)).unwrap();
        }
        // Tests run in parallel: each takes its own number from a counter (two tests checking
        // the same free number before either Xvfb made its socket shared one display).
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(90);
        let mut failures = Vec::new();
        for _ in 0..3 {
            let n = std::iter::from_fn(|| Some(NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)))
                .take_while(|&n| n < 400)
                .find(|n| {
                    !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
                        && !Path::new(&format!("/tmp/.X{n}-lock")).exists()
                })
                .expect("a free X display");
            let display = format!(":{n}");
            let log = dir.path().join(format!("xvfb{n}.log"));
            let xvfb =
                own_group(Command::new("Xvfb").args([&display, "-screen", "0", "1400x900x24", "-nolisten", "tcp"]))
                    .stderr(std::fs::File::create(&log).unwrap())
                    .spawn()
                    .expect("start Xvfb");
            let mut procs = Procs(vec![xvfb]);
            let socket = format!("/tmp/.X11-unix/X{n}");
            let t0 = Instant::now();
            let mut exited = false;
            while !Path::new(&socket).exists() {
                if procs.0[0].try_wait().ok().flatten().is_some() {
                    exited = true;
                    break;
                }
                assert!(t0.elapsed() < Duration::from_secs(20), "timed out after 20 s waiting for Xvfb on :{n}");
                std::thread::sleep(Duration::from_millis(100));
            }
            if !exited {
                return Self { display, dir, procs };
            }
            // An X server that exited (a display taken behind our back): say why, try the next.
            drop(procs);
            failures.push(format!(":{n}: {}", std::fs::read_to_string(&log).unwrap_or_default().trim()));
        }
        panic!("Xvfb exited three times: {failures:?}");
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The inspector on the samples (bundled model), with its trace, as a shell command line.
    fn camscope_cmd(&self, extra: &str) -> String {
        self.camscope_cmd_via("", extra)
    }

    /// [`Screen::camscope_cmd`] with the camscope command run by `via` (e.g. a slow link).
    fn camscope_cmd_via(&self, via: &str, extra: &str) -> String {
        format!(
            "CAMSCOPE_CACHE_DIR='{}' exec {via} '{}' samples --trace '{}' {extra} 2>'{}'",
            self.path("cache").display(),
            env!("CARGO_BIN_EXE_camscope"),
            self.path("trace.jsonl").display(),
            self.path("stderr").display()
        )
    }

    fn xterm(&mut self, bg: &str, registers: u16, extra: &str) {
        let cmd = self.camscope_cmd(extra);
        self.xterm_running(bg, registers, &cmd);
    }

    /// xterm (sixel, `registers` colour registers) running the shell command line `cmd`.
    fn xterm_running(&mut self, bg: &str, registers: u16, cmd: &str) {
        let child = own_group(
            Command::new("xterm")
                .env("DISPLAY", &self.display)
                .env_remove("COLORTERM")
                .env_remove("TMUX")
                .current_dir(root())
                .args(["-ti", "vt340", "-xrm", "XTerm*decTerminalID: vt340", "-xrm"])
                .arg(format!("XTerm*numColorRegisters: {registers}"))
                .args(["-geometry", &format!("{COLS}x{ROWS}+0+0"), "-fa", "Monospace", "-fs", "9", "-bg", bg])
                .args(["-fg", if bg == "white" { "black" } else { "white" }, "-e", "sh", "-c", cmd]),
        )
        .spawn()
        .expect("start xterm");
        self.procs.0.push(child);
    }

    fn kitty(&mut self) {
        let cmd = self.camscope_cmd("");
        let child = own_group(
            Command::new("kitty")
                .env("DISPLAY", &self.display)
                .env("LIBGL_ALWAYS_SOFTWARE", "1")
                .env_remove("TMUX")
                .current_dir(root())
                .args(["--config", "NONE", "-o", "font_size=9", "-o", "remember_window_size=no"])
                .args(["-o", &format!("initial_window_width={COLS}c"), "-o", &format!("initial_window_height={ROWS}c")])
                .args(["-e", "sh", "-c", &cmd]),
        )
        .spawn()
        .expect("start kitty");
        self.procs.0.push(child);
    }

    fn trace(&self) -> String {
        std::fs::read_to_string(self.path("trace.jsonl")).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.path("stderr")).unwrap_or_default()
    }

    /// Wait for the first map on screen; returns the graphics the inspector chose.
    fn wait_first_map(&self) -> String {
        wait_for(&format!("the first map (trace: {}; stderr: {})", self.trace(), self.stderr()), FIRST_MAP, || {
            self.trace().lines().any(|l| l.contains("\"ev\":\"shown\""))
        });
        std::thread::sleep(SETTLE);
        let t = self.trace();
        let first = t.lines().find(|l| l.contains("first_frame")).expect("first_frame in the trace");
        let g = first.split("\"graphics\":\"").nth(1).expect("graphics in first_frame");
        g[..g.find('"').unwrap()].to_owned()
    }

    /// The terminal's window: id and geometry (x, y, w, h).
    fn window(&self) -> (String, (u32, u32, u32, u32)) {
        let out = Command::new("xdotool")
            .env("DISPLAY", &self.display)
            .args(["search", "--onlyvisible", "--name", "."])
            .output()
            .expect("xdotool search");
        let ids = String::from_utf8_lossy(&out.stdout).into_owned();
        let id = ids.lines().last().expect("a terminal window").trim().to_owned();
        let info = Command::new("xwininfo").env("DISPLAY", &self.display).args(["-id", &id]).output().unwrap();
        let info = String::from_utf8_lossy(&info.stdout).into_owned();
        let field = |k: &str| -> u32 {
            info.lines().find_map(|l| l.trim().strip_prefix(k)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
        };
        let g = (field("Absolute upper-left X:"), field("Absolute upper-left Y:"), field("Width:"), field("Height:"));
        (id, g)
    }

    fn key(&self, key: &str) {
        let (id, _) = self.window();
        let ok = Command::new("xdotool")
            .env("DISPLAY", &self.display)
            .args(["windowfocus", "--sync", &id, "key", key])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "xdotool key {key}");
        std::thread::sleep(SETTLE);
    }

    fn shot(&self, name: &str) -> RgbImage {
        let p = self.path(&format!("{name}.png"));
        let ok = Command::new("import")
            .env("DISPLAY", &self.display)
            .args(["-window", "root"])
            .arg(&p)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "import -window root");
        if let Ok(dir) = std::env::var("CAMSCOPE_SHOTS") {
            let _ = std::fs::copy(&p, Path::new(&dir).join(format!("{name}.png")));
        }
        image::open(&p).expect("read the screenshot").to_rgb8()
    }
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A pixel rectangle: x, y, w, h.
type Px = (u32, u32, u32, u32);

/// The image pane's inside in pixels, from the window geometry and the inspector's own layout.
fn image_pane(window: (u32, u32, u32, u32), cols: u16, rows: u16) -> (Px, (f64, f64)) {
    let panes = camscope::tui::view::layout(ratatui::layout::Rect::new(0, 0, cols, rows)).expect("layout");
    let r = camscope::tui::view::inner(panes.image);
    let (cw, ch) = (f64::from(window.2) / f64::from(cols), f64::from(window.3) / f64::from(rows));
    let px = |c: u16, size: f64| (f64::from(c) * size) as u32;
    ((window.0 + px(r.x, cw), window.1 + px(r.y, ch), px(r.width, cw), px(r.height, ch)), (cw, ch))
}

/// The bounding box of pixels unlike the background (the pane's top-left corner) inside `r`.
fn content_box(img: &RgbImage, r: Px) -> Option<Px> {
    let bg = img.get_pixel(r.0 + 2, r.1 + 2);
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for y in r.1..r.1 + r.3 {
        for x in r.0..r.0 + r.2 {
            if img.get_pixel(x, y) != bg {
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            }
        }
    }
    (x1 > x0 && y1 > y0).then(|| (x0, y0, x1 - x0 + 1, y1 - y0 + 1))
}

/// Colour changes between horizontal neighbours per pixel, over the box: half-blocks change
/// colour only at cell borders (at most 1 / cell width), a photo at full resolution far more.
fn detail(img: &RgbImage, b: Px) -> f64 {
    let mut changes = 0u64;
    for y in b.1..b.1 + b.3 {
        for x in b.0..b.0 + b.2 - 1 {
            if img.get_pixel(x, y) != img.get_pixel(x + 1, y) {
                changes += 1;
            }
        }
    }
    changes as f64 / (f64::from(b.2 - 1) * f64::from(b.3))
}

/// The fraction of pixels that differ between two screenshots inside `r`.
fn differ(a: &RgbImage, b: &RgbImage, r: Px) -> f64 {
    let mut n = 0u64;
    for y in r.1..r.1 + r.3 {
        for x in r.0..r.0 + r.2 {
            if a.get_pixel(x, y) != b.get_pixel(x, y) {
                n += 1;
            }
        }
    }
    n as f64 / (f64::from(r.2) * f64::from(r.3))
}

/// WCAG contrast ratio of two sRGB colours.
fn contrast(a: [u8; 3], b: [u8; 3]) -> f64 {
    let lum = |c: [u8; 3]| {
        let ch = |v: u8| {
            let v = f64::from(v) / 255.0;
            if v <= 0.03928 { v / 12.92 } else { ((v + 0.055) / 1.055).powf(2.4) }
        };
        0.2126 * ch(c[0]) + 0.7152 * ch(c[1]) + 0.0722 * ch(c[2])
    };
    let (x, y) = (lum(a), lum(b));
    (x.max(y) + 0.05) / (x.min(y) + 0.05)
}

/// The text colours in `r` (those with at least 1.5% of its non-background pixels; glyph
/// edges blend into many rarer colours), with their contrast against the background.
fn text_contrasts(img: &RgbImage, r: Px, bg: [u8; 3]) -> Vec<([u8; 3], f64)> {
    let mut hist = std::collections::HashMap::<[u8; 3], u64>::new();
    for y in r.1..r.1 + r.3 {
        for x in r.0..r.0 + r.2 {
            let p = img.get_pixel(x, y).0;
            if p != bg {
                *hist.entry(p).or_default() += 1;
            }
        }
    }
    let total: u64 = hist.values().sum();
    let mut out: Vec<_> =
        hist.into_iter().filter(|&(_, n)| n * 1000 >= total * 15).map(|(c, _)| (c, contrast(c, bg))).collect();
    out.sort_by(|a, b| a.1.total_cmp(&b.1));
    out
}

/// The popups, and the keys that open and close them.
const POPUPS: [(&str, &str, &str); 4] = [
    ("help", "question", "Escape"),
    ("layers", "L", "Escape"),
    ("summary", "t", "Escape"),
    ("search", "slash", "Escape"),
];

/// Everything item 1 asks of a graphics terminal, once it shows its first map.
fn check_full_resolution_and_no_stale_pixels(s: &Screen, name: &str) {
    let (_, win) = s.window();
    let (pane, (cw, _)) = image_pane(win, COLS, ROWS);
    let base = s.shot(&format!("{name}-0"));
    let b = content_box(&base, pane).unwrap_or_else(|| panic!("{name}: nothing drawn in the image pane {pane:?}"));
    assert!(b.2 > pane.2 / 3 && b.3 > pane.3 / 3, "{name}: the picture {b:?} is small for the pane {pane:?}");
    let d = detail(&base, b);
    let half_blocks_max = 1.0 / cw;
    assert!(
        d > 3.0 * half_blocks_max,
        "{name}: {d:.3} colour changes a pixel; half-blocks make at most {half_blocks_max:.3}"
    );

    // Another class, then another image: the picture changes.
    s.key("l");
    s.key("j");
    let class = s.shot(&format!("{name}-class"));
    assert!(differ(&base, &class, b) > 0.05, "{name}: the overlay did not change with the class");
    s.key("k");
    s.key("j");
    s.key("h");
    s.key("j");
    let next = s.shot(&format!("{name}-image"));
    assert!(differ(&class, &next, pane) > 0.05, "{name}: the picture did not change with the image");
    s.key("k");
    let back = s.shot(&format!("{name}-back"));

    // Each popup opens (the screen changes) and closes leaving nothing behind.
    let body = (win.0, win.1, win.2, pane.1 + pane.3 - win.1);
    for (popup, open, close) in POPUPS {
        s.key(open);
        let shown = s.shot(&format!("{name}-{popup}"));
        assert!(differ(&back, &shown, pane) > 0.02, "{name}: the {popup} popup did not show");
        s.key(close);
        let after = s.shot(&format!("{name}-{popup}-closed"));
        let left = differ(&back, &after, body);
        assert!(left < 0.002, "{name}: {:.2}% of the screen stale after the {popup} popup closed", left * 100.0);
    }
}

fn resize_leaves_nothing_stale(s: &Screen, name: &str) {
    let (id, win) = s.window();
    let (pane, _) = image_pane(win, COLS, ROWS);
    let before = s.shot(&format!("{name}-before-resize"));
    let size = |w: u32, h: u32| {
        let ok = Command::new("xdotool")
            .env("DISPLAY", &s.display)
            .args(["windowsize", &id, &w.to_string(), &h.to_string()])
            .status()
            .is_ok_and(|st| st.success());
        assert!(ok, "xdotool windowsize");
        std::thread::sleep(SETTLE * 2);
    };
    size(win.2 * 3 / 4, win.3 * 3 / 4);
    let small = s.shot(&format!("{name}-small"));
    // Nothing is drawn outside the smaller window (the X server clips it), and the old picture
    // is gone from where the new layout has no picture.
    let (_, sw) = s.window();
    let (spane, _) = image_pane(sw, (f64::from(COLS) * 0.75) as u16, (f64::from(ROWS) * 0.75) as u16);
    let sb = content_box(&small, spane).expect("a picture after the resize");
    assert!(sb.2 < pane.2, "{name}: the picture did not shrink with the window");
    size(win.2, win.3);
    let after = s.shot(&format!("{name}-after-resize"));
    let body = (win.0, win.1, win.2, pane.1 + pane.3 - win.1);
    let left = differ(&before, &after, body);
    assert!(left < 0.002, "{name}: {:.2}% of the screen differs after resizing back", left * 100.0);
}

#[test]
fn xterm_sixel_full_resolution_and_nothing_stale() {
    if !can_run("xterm_sixel_full_resolution_and_nothing_stale") {
        return;
    }
    let mut s = Screen::start();
    s.xterm("white", 256, "");
    let g = s.wait_first_map();
    assert!(g.starts_with("sixel (256 registers)"), "auto-detection in xterm -ti vt340: {g}");
    check_full_resolution_and_no_stale_pixels(&s, "xterm");
    resize_leaves_nothing_stale(&s, "xterm");
    s.key("q");
    wait_for("camscope to quit", Duration::from_secs(30), || s.trace().contains("\"ev\":\"exit\""));
}

/// Over a slow link the terminal's answers come after the first frame, which starts with
/// half-blocks; once they are in, the inspector switches to sixel by itself, and the screen is
/// then the one a fast link gives (nothing of the half-blocks left). The link is
/// `tests/common/slow_tty.py`: the terminal's bytes reach camscope 3 s late.
#[test]
fn late_answers_upgrade_half_blocks_to_sixel_leaving_nothing_stale() {
    if !can_run("late_answers_upgrade_half_blocks_to_sixel_leaving_nothing_stale") {
        return;
    }
    let slow = root().join("tests/common/slow_tty.py");
    let mut s = Screen::start();
    let cmd = s.camscope_cmd_via(&format!("python3 '{}' 3", slow.display()), "");
    s.xterm_running("white", 256, &cmd);
    let g = s.wait_first_map();
    assert!(g.starts_with("half-blocks") && g.contains("no answer in"), "the first frame over the slow link: {g}");
    let (_, win) = s.window();
    let (pane, (cw, _)) = image_pane(win, COLS, ROWS);
    let upgraded =
        |t: &str| t.lines().any(|l| l.contains("\"ev\":\"graphics\"") && l.contains("sixel (256 registers)"));
    if !upgraded(&s.trace()) {
        // Still half-blocks (the answers come 3 s late): their few colour changes.
        let before = s.shot("late-before");
        let b = content_box(&before, pane).expect("a half-block picture");
        assert!(detail(&before, b) < 2.0 / cw, "half-blocks expected before the answers");
    }
    wait_for(&format!("the switch to sixel (trace: {})", s.trace()), Duration::from_secs(30), || upgraded(&s.trace()));
    std::thread::sleep(SETTLE);
    let late = s.shot("late-after");
    let b = content_box(&late, pane).expect("a picture after the switch");
    let d = detail(&late, b);
    assert!(d > 3.0 / cw, "full resolution expected after the switch: {d:.3} colour changes a pixel");
    s.key("q");
    wait_for("camscope to quit", Duration::from_secs(30), || s.trace().contains("\"ev\":\"exit\""));
    drop(s);

    // The same screen over a fast link, where sixel is chosen before the first frame.
    let mut s = Screen::start();
    s.xterm("white", 256, "");
    assert!(s.wait_first_map().starts_with("sixel"));
    let fast = s.shot("late-fast");
    let left = differ(&fast, &late, pane);
    assert!(left < 0.002, "{:.2}% of the image pane differs from a fast link's", left * 100.0);
    s.key("q");
    wait_for("camscope to quit", Duration::from_secs(30), || s.trace().contains("\"ev\":\"exit\""));
}

#[test]
fn kitty_full_resolution_and_nothing_stale() {
    if !can_run("kitty_full_resolution_and_nothing_stale") {
        return;
    }
    let mut s = Screen::start();
    s.kitty();
    let g = s.wait_first_map();
    assert!(g.starts_with("kitty"), "auto-detection in kitty: {g}");
    check_full_resolution_and_no_stale_pixels(&s, "kitty");
    s.key("q");
    wait_for("camscope to quit", Duration::from_secs(30), || s.trace().contains("\"ev\":\"exit\""));
}

#[test]
fn sixel_with_16_colour_registers_falls_back_to_half_blocks() {
    if !can_run("sixel_with_16_colour_registers_falls_back_to_half_blocks") {
        return;
    }
    let mut s = Screen::start();
    s.xterm("black", 16, "");
    let g = s.wait_first_map();
    assert!(g.starts_with("half-blocks") && g.contains("16 colour registers"), "{g}");
    let (_, win) = s.window();
    let (pane, (cw, _)) = image_pane(win, COLS, ROWS);
    let shot = s.shot("xterm16");
    let b = content_box(&shot, pane).expect("a picture");
    let d = detail(&shot, b);
    assert!(d < 2.0 / cw, "half-blocks expected, {d:.3} colour changes a pixel");
}

#[test]
fn text_reads_on_white_and_on_black() {
    if !can_run("text_reads_on_white_and_on_black") {
        return;
    }
    for bg in ["white", "black"] {
        let mut s = Screen::start();
        s.xterm(bg, 256, "--graphics halfblocks");
        s.wait_first_map();
        let shot = s.shot(&format!("theme-{bg}"));
        let (_, win) = s.window();
        let (pane, (cw, ch)) = image_pane(win, COLS, ROWS);
        let bgc = if bg == "white" { [255, 255, 255] } else { [0, 0, 0] };
        // The file list (names and predictions) and the status bar.
        let _ = pane;
        let panes = camscope::tui::view::layout(ratatui::layout::Rect::new(0, 0, COLS, ROWS)).expect("layout");
        let px = |r: ratatui::layout::Rect| {
            let at = |c: u16, size: f64| (f64::from(c) * size) as u32;
            (win.0 + at(r.x, cw), win.1 + at(r.y, ch), at(r.width, cw), at(r.height, ch))
        };
        let files = px(camscope::tui::view::inner(panes.files));
        let status = px(panes.status);
        for (what, r) in [("file list", files), ("status bar", status)] {
            let colours = text_contrasts(&shot, r, bgc);
            assert!(!colours.is_empty(), "{bg}: no text in the {what}");
            let worst = colours[0];
            assert!(
                worst.1 >= 3.0,
                "{bg} background: {what} text colour {:?} has contrast {:.2}:1 ({colours:?})",
                worst.0,
                worst.1
            );
        }
    }
}
