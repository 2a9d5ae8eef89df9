//! Asking the terminal what it can do, with a hard time bound.
//!
//! One batch of queries is written at start (after raw mode, before the input thread reads
//! events): the kitty graphics query, XTVERSION (`CSI > q`: the terminal's name and version,
//! which tells kitty < 0.28 and iTerm2 apart), XTSMGRAPHICS (`CSI ? 1 ; 1 ; 0 S`: how many sixel
//! colour registers), the cell and window sizes in pixels (`CSI 16 t`, `CSI 14 t`), a true-colour
//! probe (set an SGR `38;2;1;2;3` foreground, read it back with DECRQSS `DCS $ q m ST`, reset:
//! a terminal that keeps 24-bit colours echoes the three components, one that maps them to a
//! palette does not — the technique of notcurses and termenv), primary device attributes
//! (`CSI c`: `4` means sixel) and last a status report (`CSI 5 n`), which every terminal answers
//! and which therefore marks the end of the answers.
//!
//! Why not `ratatui_image::Picker::from_query_stdio`: its reader thread blocks on stdin with no
//! way to stop it, each chunk of input restarts its timeout (a terminal that trickles garbage
//! keeps it waiting for ever), and after a timeout it swallows the user's first keys.
//! Here the reader polls with a deadline ([`DEADLINE`]) and never blocks past it. Answers that
//! arrive later (a slow SSH link) are still consumed, by [`Late::drain`] on the input thread
//! before crossterm reads events, so they never turn into key presses; plain bytes read there
//! (keys typed meanwhile) are passed on as keys.

use std::time::{Duration, Instant};

/// How long the first frame waits for the terminal's answers. A local terminal answers in about
/// a millisecond, tmux in a few; waiting longer is a visible delay before the first frame.
/// Answers that come later (a slow SSH link) still upgrade the renderer once they are in.
pub const DEADLINE: Duration = Duration::from_millis(200);

/// [`DEADLINE`], or `CAMSCOPE_PROBE_MS` milliseconds: longer on a link known to be slow (the
/// first frame then waits for the graphics instead of starting with half-blocks), 0 to start
/// at once (the tests use it to make every answer late).
pub fn deadline() -> Duration {
    std::env::var("CAMSCOPE_PROBE_MS").ok().and_then(|v| v.trim().parse().ok()).map_or(DEADLINE, Duration::from_millis)
}
/// How long late answers are waited for (and consumed) in the background before crossterm takes
/// over the input; keys typed meanwhile are passed on.
pub const LATE_DEADLINE: Duration = Duration::from_secs(5);

/// The queries, in the order of [`Answers`]' fields; the status report goes last.
pub const QUERY: &str = concat!(
    "\x1b_Gi=31,s=1,v=1,a=q,t=d,f=24;AAAA\x1b\\",
    "\x1b[>q",
    "\x1b[?1;1;0S",
    "\x1b[16t",
    "\x1b[14t",
    "\x1b[38;2;1;2;3m\x1bP$qm\x1b\\\x1b[m",
    "\x1b[c",
    "\x1b[5n",
);

/// What the terminal said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answers {
    /// The kitty graphics query was acknowledged.
    pub kitty: bool,
    /// Primary device attributes list sixel graphics (`4`).
    pub sixel: bool,
    /// XTSMGRAPHICS: the number of sixel colour registers.
    pub color_registers: Option<u16>,
    /// Cell size in pixels (width, height), from `CSI 16 t`.
    pub cell_px: Option<(u16, u16)>,
    /// Text area size in pixels (width, height), from `CSI 14 t`.
    pub window_px: Option<(u16, u16)>,
    /// DECRQSS echoed the 24-bit colour: `Some(true)`; answered without it: `Some(false)`.
    pub truecolor: Option<bool>,
    /// XTVERSION, e.g. `kitty(0.26.5)` or `XTerm(379)`.
    pub version: Option<String>,
    /// The status report arrived: every answer the terminal meant to give is in.
    pub complete: bool,
    /// Device attributes arrived (a terminal that answers anything answers these).
    pub attributes: bool,
    /// Bytes that were neither an answer nor a key (a terminal answering with garbage).
    pub garbage: usize,
}

impl Answers {
    /// The terminal's name from XTVERSION, lower case (`kitty`, `xterm`, `tmux`, ...).
    pub fn name(&self) -> Option<String> {
        let v = self.version.as_deref()?;
        let end = v.find(['(', ' ']).unwrap_or(v.len());
        Some(v[..end].to_ascii_lowercase())
    }

    /// The version number from XTVERSION as (major, minor), e.g. kitty's `(0, 26)`.
    pub fn version_number(&self) -> Option<(u32, u32)> {
        let v = self.version.as_deref()?;
        let start = v.find(|c: char| c.is_ascii_digit())?;
        let mut parts = v[start..].split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
        Some((major, minor))
    }
}

/// A key typed while the answers were being read (only what camscope's keys need).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Enter,
    Esc,
    Tab,
    Backspace,
    Up,
    Down,
    Left,
    Right,
}

/// Splits the byte stream into answers and keys.
#[derive(Debug, Default)]
pub struct Parser {
    state: State,
    seq: Vec<u8>,
    pub answers: Answers,
    /// Whether plain bytes are keys (after the answers) or garbage (among them).
    pub keys_allowed: bool,
    keys: Vec<Key>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Ground,
    Esc,
    Csi,
    /// DCS, APC or OSC: up to ST (or BEL); the introducer is the first byte of `seq`.
    Str,
    StrEsc,
}

/// Longer sequences are garbage; the parser gives up on them rather than grow without bound.
const MAX_SEQ: usize = 4096;

impl Parser {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.byte(b);
        }
    }

    /// A lone ESC at the end of the input read so far: the Esc key (called when no more input
    /// follows it within a poll).
    pub fn flush_esc(&mut self) {
        if self.state == State::Esc {
            self.state = State::Ground;
            self.key(Key::Esc);
        }
    }

    pub fn take_keys(&mut self) -> Vec<Key> {
        std::mem::take(&mut self.keys)
    }

    fn key(&mut self, k: Key) {
        if self.keys_allowed {
            self.keys.push(k);
        } else {
            self.answers.garbage += 1;
        }
    }

    fn byte(&mut self, b: u8) {
        match self.state {
            State::Ground => match b {
                0x1b => self.state = State::Esc,
                b'\r' | b'\n' => self.key(Key::Enter),
                b'\t' => self.key(Key::Tab),
                0x7f | 0x08 => self.key(Key::Backspace),
                0x20..=0x7e => self.key(Key::Char(char::from(b))),
                _ => self.answers.garbage += 1,
            },
            State::Esc => {
                self.seq.clear();
                match b {
                    b'[' => self.state = State::Csi,
                    b'P' | b'_' | b']' => {
                        self.seq.push(b);
                        self.state = State::Str;
                    }
                    0x1b => self.key(Key::Esc),
                    _ => {
                        // Alt+key or garbage: neither is an answer.
                        self.state = State::Ground;
                        self.answers.garbage += 1;
                    }
                }
            }
            State::Csi => {
                if (0x40..=0x7e).contains(&b) {
                    self.state = State::Ground;
                    let params = String::from_utf8_lossy(&self.seq).into_owned();
                    self.csi(&params, b);
                } else if self.seq.len() < MAX_SEQ && (0x20..0x40).contains(&b) {
                    self.seq.push(b);
                } else {
                    self.state = State::Ground;
                    self.answers.garbage += 1;
                }
            }
            State::Str => match b {
                0x1b => self.state = State::StrEsc,
                0x07 => self.string(),
                _ if self.seq.len() < MAX_SEQ => self.seq.push(b),
                _ => {
                    self.state = State::Ground;
                    self.answers.garbage += 1;
                }
            },
            State::StrEsc => {
                if b == b'\\' {
                    self.string();
                } else {
                    // Not ST: the string was cut short; start over at this ESC.
                    self.answers.garbage += 1;
                    self.state = State::Esc;
                    self.byte(b);
                }
            }
        }
    }

    fn csi(&mut self, params: &str, fin: u8) {
        let nums = |s: &str| -> Vec<u32> { s.split(';').filter_map(|p| p.parse().ok()).collect() };
        match (fin, params.as_bytes().first()) {
            (b'c', Some(b'?')) => {
                self.answers.attributes = true;
                self.answers.sixel |= params[1..].split(';').any(|p| p == "4");
            }
            (b'n', _) if params == "0" || params == "3" => self.answers.complete = true,
            (b'S', Some(b'?')) => {
                if let [1, 0, n, ..] = nums(&params[1..])[..] {
                    self.answers.color_registers = u16::try_from(n).ok();
                }
            }
            (b't', _) => match nums(params)[..] {
                [6, h, w] => self.answers.cell_px = size(w, h),
                [4, h, w] => self.answers.window_px = size(w, h),
                _ => self.answers.garbage += 1,
            },
            (b'A', None) => self.key(Key::Up),
            (b'B', None) => self.key(Key::Down),
            (b'C', None) => self.key(Key::Right),
            (b'D', None) => self.key(Key::Left),
            // Focus, mouse and other reports: not answers, not keys.
            _ => {}
        }
    }

    fn string(&mut self) {
        self.state = State::Ground;
        let body = String::from_utf8_lossy(&self.seq[1..]).into_owned();
        match self.seq[0] {
            b'_' if body.starts_with('G') => {
                let (keys, msg) = body[1..].split_once(';').unwrap_or((&body[1..], ""));
                if keys.split(',').any(|k| k == "i=31") && msg == "OK" {
                    self.answers.kitty = true;
                }
            }
            b'P' if body.starts_with(">|") => self.answers.version = Some(body[2..].trim().to_owned()),
            b'P' if body.starts_with("1$r") => self.answers.truecolor = Some(echoes_rgb(&body[3..])),
            b'P' if body.starts_with("0$r") => self.answers.truecolor = Some(false),
            // OSC answers (colours) and anything else: ignored.
            _ => {}
        }
    }
}

fn size(w: u32, h: u32) -> Option<(u16, u16)> {
    let (w, h) = (u16::try_from(w).ok()?, u16::try_from(h).ok()?);
    (w > 0 && h > 0).then_some((w, h))
}

/// Whether a DECRQSS SGR answer (e.g. `0;38:2::1:2:3m` or `38;2;1;2;3m`) holds the foreground
/// `1 2 3` as 24-bit colour. Both separators and the optional colour-space field are accepted.
fn echoes_rgb(sgr: &str) -> bool {
    let fields: Vec<&str> = sgr.trim_end_matches('m').split([';', ':']).collect();
    fields.windows(2).enumerate().any(|(i, w)| {
        w == ["38", "2"] && {
            let rest: Vec<&str> = fields[i + 2..].iter().copied().filter(|f| !f.is_empty()).take(3).collect();
            rest == ["1", "2", "3"]
        }
    })
}

/// The answers still to come after [`DEADLINE`], consumed on the input thread.
#[derive(Debug)]
pub struct Late {
    parser: Parser,
    /// When the queries were written.
    t0: Instant,
    until: Instant,
}

/// What the probe found, and what is left to read.
#[derive(Debug)]
pub struct Probe {
    pub answers: Answers,
    /// Keys typed during the probe (after the answers).
    pub keys: Vec<Key>,
    /// How long the first frame waited.
    pub waited: Duration,
    /// `Some` when the status report had not arrived by the deadline.
    pub late: Option<Late>,
}

/// Write [`QUERY`] to stdout and read stdin until the status report or `deadline`. The terminal
/// must be in raw mode, and nothing else may read stdin meanwhile.
#[cfg(unix)]
pub fn query(deadline: Duration) -> std::io::Result<Probe> {
    use std::io::Write;
    let t0 = Instant::now();
    let mut out = std::io::stdout();
    out.write_all(QUERY.as_bytes())?;
    out.flush()?;
    let mut parser = Parser::new();
    read_until(&mut parser, t0 + deadline);
    let keys = parser.take_keys();
    let answers = parser.answers.clone();
    let late = (!answers.complete).then(|| {
        parser.keys_allowed = true;
        Late { parser, t0, until: t0 + LATE_DEADLINE }
    });
    Ok(Probe { answers, keys, waited: t0.elapsed(), late })
}

#[cfg(not(unix))]
pub fn query(_deadline: Duration) -> std::io::Result<Probe> {
    Ok(Probe { answers: Answers::default(), keys: Vec::new(), waited: Duration::ZERO, late: None })
}

impl Late {
    /// Consume the answers that arrive after the deadline, until the status report or
    /// [`LATE_DEADLINE`]; keys read meanwhile are handed to `on_key` as they come, and `stop`
    /// ends it early (a quit signal). Returns the answers as finally known, and how long
    /// after the queries they were in.
    pub fn drain(mut self, mut on_key: impl FnMut(Key), stop: impl Fn() -> bool) -> (Answers, Duration) {
        while !self.parser.answers.complete && !stop() {
            let now = Instant::now();
            if now >= self.until {
                break;
            }
            read_until(&mut self.parser, (now + Duration::from_millis(100)).min(self.until));
            for k in self.parser.take_keys() {
                on_key(k);
            }
        }
        (self.parser.answers, self.t0.elapsed())
    }
}

/// Read what stdin has until the status report arrives or `until` passes, never blocking past
/// it; once the report is in, what follows in the same read are keys.
#[cfg(unix)]
fn read_until(parser: &mut Parser, until: Instant) {
    let mut buf = [0u8; 1024];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if parser.answers.complete || left.is_zero() {
            parser.flush_esc();
            return;
        }
        let mut fds = libc::pollfd { fd: libc::STDIN_FILENO, events: libc::POLLIN, revents: 0 };
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut fds, 1, ms) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if n == 0 {
            parser.flush_esc();
            continue;
        }
        if fds.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 && fds.revents & libc::POLLIN == 0 {
            return;
        }
        // SAFETY: reading into a buffer of the given length; stdin has data (poll said so).
        let got = unsafe { libc::read(libc::STDIN_FILENO, buf.as_mut_ptr().cast(), buf.len()) };
        if got <= 0 {
            return;
        }
        for &b in &buf[..got as usize] {
            let was_complete = parser.answers.complete;
            parser.push(&[b]);
            if !was_complete && parser.answers.complete {
                parser.keys_allowed = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Parser {
        let mut p = Parser::new();
        p.push(s.as_bytes());
        p
    }

    #[test]
    fn xterm_vt340_answers() {
        let p = parse(concat!(
            "\x1bP>|XTerm(379)\x1b\\",
            "\x1b[?1;0;256S",
            "\x1b[6;17;8t",
            "\x1b[4;765;1120t",
            "\x1bP1$r0;38:2::1:2:3m\x1b\\",
            "\x1b[?63;1;2;4;6;9;15;16;22;29c",
            "\x1b[0n",
        ));
        let a = &p.answers;
        assert!(a.sixel && !a.kitty && a.complete && a.attributes, "{a:?}");
        assert_eq!(a.color_registers, Some(256));
        assert_eq!(a.cell_px, Some((8, 17)));
        assert_eq!(a.window_px, Some((1120, 765)));
        assert_eq!(a.truecolor, Some(true));
        assert_eq!(a.name().as_deref(), Some("xterm"));
        assert_eq!(a.version_number(), Some((379, 0)));
        assert_eq!(a.garbage, 0);
    }

    #[test]
    fn kitty_answers_and_old_versions() {
        let p = parse("\x1b_Gi=31;OK\x1b\\\x1bP>|kitty(0.26.5)\x1b\\\x1bP1$r38:2:1:2:3m\x1b\\\x1b[?62;c\x1b[0n");
        let a = &p.answers;
        assert!(a.kitty && !a.sixel && a.truecolor == Some(true), "{a:?}");
        assert_eq!((a.name().as_deref(), a.version_number()), (Some("kitty"), Some((0, 26))));
        // A kitty error answer is not support.
        assert!(!parse("\x1b_Gi=31;ENOTSUPPORTED:x\x1b\\").answers.kitty);
    }

    #[test]
    fn palette_terminals_do_not_echo_24_bit_colour() {
        assert_eq!(parse("\x1bP1$r0;38;5;16m\x1b\\").answers.truecolor, Some(false));
        assert_eq!(parse("\x1bP0$r\x1b\\").answers.truecolor, Some(false));
        assert_eq!(parse("\x1bP1$r38;2;1;2;3m\x1b\\").answers.truecolor, Some(true));
        assert_eq!(parse("\x1b[0n").answers.truecolor, None);
    }

    #[test]
    fn garbage_is_neither_answer_nor_key() {
        let mut p = parse("qj\x1bZ\x1b[?xyzc\x1b[9;9;9;9t\x01\x1bP$$$$");
        assert!(p.take_keys().is_empty(), "keys from garbage before the answers");
        assert!(p.answers.garbage > 3 && !p.answers.complete && !p.answers.sixel, "{:?}", p.answers);
        // An endless string is dropped, not kept growing.
        let mut p = Parser::new();
        p.push(b"\x1bP");
        p.push(&vec![b'x'; MAX_SEQ * 3]);
        assert!(p.seq.len() <= MAX_SEQ);
    }

    #[test]
    fn keys_after_the_answers_are_kept() {
        let mut p = Parser::new();
        p.push(b"\x1b[?62;c\x1b[0n");
        p.keys_allowed = true;
        p.push(b"jq\r\x1b[A\x1b");
        p.flush_esc();
        assert_eq!(p.take_keys(), [Key::Char('j'), Key::Char('q'), Key::Enter, Key::Up, Key::Esc]);
    }
}
