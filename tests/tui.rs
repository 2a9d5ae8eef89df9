//! Issue 5 end to end: the real binary in a real terminal (tmux), driven by keys and read back
//! through `capture-pane`, plus the errors that must appear before the terminal is taken over.
//!
//! Each test runs its own tmux server on a socket in a temporary folder, so tests can run in
//! parallel and never touch the user's tmux. Waits poll the screen with generous deadlines (a
//! loaded 2-core CI machine runs the debug binary); nothing asserts on a fixed sleep.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

/// How long a screen may take to show what a test waits for.
const DEADLINE: Duration = Duration::from_secs(180);

/// A tmux server with one 160×48 session running a command.
struct Tmux {
    _dir: tempfile::TempDir,
    socket: PathBuf,
}

impl Tmux {
    /// Start `camscope ARGS` in a fresh session (truecolor, in `cwd`, with `env` set); when it
    /// exits, the pane prints its exit status and whether the tty was left in raw mode, then
    /// waits, so the screen after camscope can be inspected.
    fn start(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let status = Command::new("tmux").arg("-V").output();
        assert!(
            status.is_ok_and(|o| o.status.success()),
            "tmux is needed for the terminal tests: install it (scripts/test does) and rerun"
        );
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("tmux.sock");
        let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        let mut cmd = String::from("env COLORTERM=truecolor");
        for (k, v) in env {
            cmd += &format!(" {k}={}", quote(v));
        }
        cmd += &format!(" {}", quote(env!("CARGO_BIN_EXE_camscope")));
        for a in args {
            cmd += &format!(" {}", quote(a));
        }
        cmd += "; echo EXITED=$?; if stty -a | grep -q -- -icanon; then echo RAW=on; else echo RAW=off; fi; sleep 3600";
        let t = Self { _dir: dir, socket };
        let out = t.tmux_in(cwd, &["-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", "160", "-y", "48", &cmd]);
        assert!(out.status.success(), "tmux new-session: {}", String::from_utf8_lossy(&out.stderr));
        t
    }

    fn tmux_in(&self, cwd: &Path, args: &[&str]) -> Output {
        Command::new("tmux").arg("-S").arg(&self.socket).args(args).current_dir(cwd).output().expect("run tmux")
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = self.tmux_in(&root(), args);
        assert!(out.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The screen as text.
    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "t"])
    }

    /// The screen with its colours (SGR escapes).
    fn screen_escaped(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-e", "-t", "t"])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    /// Poll until `ok(screen)` holds; panics with the last screen after [`DEADLINE`].
    fn wait(&self, what: &str, ok: impl Fn(&Tmux, &str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let s = self.screen();
            if ok(self, &s) {
                return s;
            }
            if t0.elapsed() > DEADLINE {
                panic!("timed out waiting for {what}; the screen is:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `#{alternate_on} #{cursor_flag}` of the pane.
    fn modes(&self) -> String {
        self.tmux(&["display", "-p", "-t", "t", "#{alternate_on} #{cursor_flag}"]).trim().to_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux_in(&root(), &["kill-server"]);
    }
}

/// The highlighted row of the classes pane (its label and probability).
fn highlighted(screen: &str) -> Option<String> {
    let line = screen.lines().find(|l| l.contains('▶'))?;
    let after = &line[line.find('▶')? + '▶'.len_utf8()..];
    Some(after.split(['│', '┃']).next()?.trim().to_owned())
}

/// The image pane's cells with their colours: on each line, from the first half-block to the last.
fn image_cells(escaped: &str) -> String {
    escaped
        .lines()
        .filter_map(|l| {
            let a = l.find(['▀', '▄'])?;
            let b = l.rfind(['▀', '▄'])?;
            // Include the colour escapes just before the first block.
            let start = l[..a].rfind('\u{1b}').unwrap_or(a);
            Some(&l[start..b])
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The screen shows a finished map: the top-k list, its timings, nothing computing.
fn map_shown(s: &str) -> bool {
    s.contains("Top 5 classes") && s.contains('▶') && s.contains("head ") && !s.contains("computing")
}

#[test]
fn inspector_switches_class_and_image_then_restores_the_terminal() {
    let t = Tmux::start(&root(), &["samples", "--graphics", "halfblocks"], &[]);
    let first = t.wait("the first image's top-k and map", |_, s| map_shown(s) && s.contains("astronaut"));
    assert!(first.contains("Files 1/9"), "{first}");
    assert!(first.contains("half-blocks") && first.contains("gradcam"), "{first}");
    let class0 = highlighted(&first).expect("a highlighted class");
    let cells0 = image_cells(&t.screen_escaped());
    assert!(cells0.contains("38;2;"), "the image is drawn in true colour: {cells0}");

    // Focus the classes and take the second class: the highlight and the heatmap follow.
    t.keys(&["Tab", "j"]);
    let s = t.wait("the second class's map", |t, s| {
        map_shown(s) && highlighted(s).is_some_and(|h| h != class0) && image_cells(&t.screen_escaped()) != cells0
    });
    let class1 = highlighted(&s).unwrap();
    assert_ne!(class1, class0);
    let cells1 = image_cells(&t.screen_escaped());

    // Back to the files, next image: a new title, its own classes and map.
    t.keys(&["Tab", "j"]);
    let s = t.wait("the second image", |t, s| {
        map_shown(s) && s.contains("dahlia/flower.jpg ·") && image_cells(&t.screen_escaped()) != cells1
    });
    assert!(s.contains("Files 2/9"), "{s}");

    // The help overlay, closed by any key.
    t.keys(&["?"]);
    t.wait("the help overlay", |_, s| s.contains("camscope keys"));
    t.keys(&["Escape"]);
    t.wait("the help to close", |_, s| !s.contains("camscope keys"));

    t.keys(&["q"]);
    let s = t.wait("camscope to exit", |_, s| s.contains("RAW="));
    assert!(s.contains("EXITED=0"), "{s}");
    assert!(s.contains("RAW=off"), "raw mode left on: {s}");
    assert!(!s.contains("Top 5 classes"), "the alternate screen was left: {s}");
    assert_eq!(t.modes(), "0 1", "alternate screen off, cursor visible");
}

#[test]
fn a_panic_inside_the_inspector_restores_the_terminal() {
    let t = Tmux::start(&root(), &["samples", "--graphics", "halfblocks"], &[("CAMSCOPE_TEST_PANIC", "1")]);
    let s = t.wait("camscope to panic and exit", |_, s| s.contains("RAW="));
    assert!(s.contains("EXITED=101"), "a panic exits with 101: {s}");
    assert!(s.contains("deliberate panic"), "the panic message is readable: {s}");
    assert!(s.contains("RAW=off"), "raw mode left on: {s}");
    assert_eq!(t.modes(), "0 1", "alternate screen off, cursor visible");
}

#[test]
fn an_empty_folder_opens_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not an image").unwrap();
    let t = Tmux::start(&root(), &[dir.path().to_str().unwrap(), "--graphics", "halfblocks"], &[]);
    let s = t.wait("the empty-folder message", |_, s| s.contains("no images under"));
    assert!(s.contains("1 non-image files skipped"), "{s}");
    t.keys(&["q"]);
    let s = t.wait("camscope to exit", |_, s| s.contains("RAW="));
    assert!(s.contains("EXITED=0") && s.contains("RAW=off"), "{s}");
}

#[test]
fn a_model_that_fails_to_load_is_one_line_before_the_terminal_is_taken() {
    let bad = data("bad/garbage.onnx");
    let out = camscope(&["--model", bad.to_str().unwrap(), "samples"]);
    let line = one_line_error(&out);
    assert!(line.contains("garbage.onnx"), "{line}");
    assert_eq!(out.status.code(), Some(1));
    let line = one_line_error(&camscope(&["no/such/folder"]));
    assert!(line.contains("no/such/folder: no such file or directory"), "{line}");
    // Not a terminal (as here): told to use `explain`, after the checks above.
    let line = one_line_error(&camscope(&["samples"]));
    assert!(line.contains("needs an interactive terminal") && line.contains("camscope explain"), "{line}");
    let line = one_line_error(&camscope(&["samples", "--alpha", "2"]));
    assert!(line.contains("--alpha 2 is outside 0..1"), "{line}");
}

#[test]
fn subcommands_still_work_beside_the_path_argument() {
    let out = camscope(&["layers", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = camscope(&["explain", "--no-show", "samples/espresso/coffee.png"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("espresso"));
    // Inspector options and a subcommand do not mix.
    let out = camscope(&["--top", "3", "layers"]);
    assert!(!out.status.success());
}
