//! A real terminal for the end-to-end tests: a tmux server of its own (socket in a temporary
//! folder, so tests run in parallel and never touch the user's tmux) with one session `t`
//! running a shell command, read back as text and typed into like a user.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::root;

/// How long a screen may take to show what a test waits for (a loaded CI machine running
/// every test at once is slow; a hang still fails).
pub const DEADLINE: Duration = Duration::from_secs(180);

/// What the pane runs after camscope: its exit status and whether it left the tty in raw
/// mode, then a wait, so the screen after camscope can be inspected.
pub const AFTER_EXIT: &str =
    "; echo EXITED=$?; if stty -a | grep -q -- -icanon; then echo RAW=on; else echo RAW=off; fi; sleep 3600";

/// `s` quoted for the shell.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

pub struct Tmux {
    dir: tempfile::TempDir,
    socket: PathBuf,
}

impl Tmux {
    /// Start `camscope ARGS` in a fresh 160×48 session (truecolor, in `cwd`, with `env` set).
    /// The scan cache goes to the session's own folder unless `env` names one.
    pub fn start(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_sized(cwd, args, env, (160, 48))
    }

    pub fn start_sized(cwd: &Path, args: &[&str], env: &[(&str, &str)], size: (u16, u16)) -> Self {
        Self::run(cwd, size, |dir| {
            let mut cmd = String::from("env COLORTERM=truecolor");
            if !env.iter().any(|(k, _)| *k == "CAMSCOPE_CACHE_DIR") {
                cmd += &format!(" CAMSCOPE_CACHE_DIR={}", quote(&dir.join("cache").to_string_lossy()));
            }
            for (k, v) in env {
                cmd += &format!(" {k}={}", quote(v));
            }
            cmd += &format!(" {}", quote(env!("CARGO_BIN_EXE_camscope")));
            for a in args {
                cmd += &format!(" {}", quote(a));
            }
            cmd + AFTER_EXIT
        })
    }

    /// Run the shell line `command(dir)` (`dir`: a folder of the session's own, removed with
    /// it) in a fresh `w`×`h` session, from `cwd`.
    pub fn run(cwd: &Path, (w, h): (u16, u16), command: impl FnOnce(&Path) -> String) -> Self {
        let status = Command::new("tmux").arg("-V").output();
        assert!(
            status.is_ok_and(|o| o.status.success()),
            "tmux is needed for the terminal tests: install it (scripts/test does) and rerun"
        );
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("tmux.sock");
        let cmd = command(dir.path());
        let t = Self { dir, socket };
        let (w, h) = (w.to_string(), h.to_string());
        let out = t.tmux_in(cwd, &["-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", &w, "-y", &h, &cmd]);
        assert!(out.status.success(), "tmux new-session: {}", String::from_utf8_lossy(&out.stderr));
        t
    }

    /// The session's own folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Run a tmux command on this server (outside any tmux the tests run in).
    pub fn tmux_in(&self, cwd: &Path, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .current_dir(cwd)
            .env_remove("TMUX")
            .output()
            .expect("run tmux")
    }

    /// Run a tmux command that must succeed; its output.
    pub fn tmux(&self, args: &[&str]) -> String {
        let out = self.tmux_in(&root(), args);
        assert!(out.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The screen as text.
    pub fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "t"])
    }

    /// The screen with its colours (SGR escapes).
    pub fn screen_escaped(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-e", "-t", "t"])
    }

    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    /// Poll every 50 ms until `ok(screen)` holds; panics with the last screen after [`DEADLINE`].
    pub fn wait(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        self.wait_every(Duration::from_millis(50), what, ok)
    }

    /// [`Self::wait`], polling every `period` (short where the wait is a latency measured).
    pub fn wait_every(&self, period: Duration, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(t0.elapsed() < DEADLINE, "timed out waiting for {what}; the screen is:\n{s}");
            std::thread::sleep(period);
        }
    }

    /// Quit camscope with `q` and check it exited with status 0.
    pub fn quit(&self) {
        self.keys(&["q"]);
        let s = self.wait("camscope to exit", |s| s.contains("EXITED="));
        assert!(s.contains("EXITED=0"), "{s}");
    }

    /// `#{alternate_on} #{cursor_flag}` of the pane.
    pub fn modes(&self) -> String {
        self.tmux(&["display", "-p", "-t", "t", "#{alternate_on} #{cursor_flag}"]).trim().to_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux_in(&root(), &["kill-server"]);
    }
}
