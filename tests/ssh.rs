//! Issue 13 item 2: the inspector through a real SSH session. A throw-away `sshd` (Debian's
//! openssh-server) listens on a free loopback port with its own host key and a user key, all in
//! a temporary folder; `ssh -tt` runs the inspector on the far side, inside a tmux session that
//! plays the user's terminal. Keys, a window resize, colours (`capture-pane -e`) and a clean exit
//! (exit status 0, the tty out of raw mode) are checked through the session. COLORTERM does not
//! cross SSH, so the colours are what the inspector asked the terminal for, and the status bar
//! says which. A second test puts a proxy that delays every chunk by a second between ssh and
//! sshd: the inspector must still start (its terminal queries are bounded) and answer keys.
//!
//! sshd must run as root here (it logs in the user it runs as only when root); without root or
//! without the programs the tests print a loud SKIPPED line, and fail instead under
//! `CAMSCOPE_REQUIRE_SSH=1` (scripts/test) when run as root. Everything started is killed by
//! guards, on failure too.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::tmux::{AFTER_EXIT, DEADLINE, Tmux, quote};
use common::*;

fn can_run(test: &str) -> bool {
    let have = |t: &str| {
        Command::new("sh").args(["-c", &format!("command -v {t}")]).output().is_ok_and(|o| o.status.success())
    };
    let missing: Vec<&str> = ["/usr/sbin/sshd", "ssh", "ssh-keygen", "tmux"].into_iter().filter(|t| !have(t)).collect();
    // SAFETY: getuid has no preconditions.
    let root = unsafe { libc::getuid() } == 0;
    let why = if !missing.is_empty() {
        format!("missing {} (apt-get install openssh-server openssh-client tmux)", missing.join(", "))
    } else if !root {
        "not root (sshd logs in the user it runs as only as root)".to_owned()
    } else {
        return true;
    };
    if root && std::env::var_os("CAMSCOPE_REQUIRE_SSH").is_some() {
        panic!("{test}: {why}");
    }
    eprintln!("\n*** SKIPPED {test}: {why} ***\n");
    false
}

/// Kills a child (and its process group) when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        // SAFETY: signalling the process group this test created.
        unsafe {
            libc::kill(-(self.0.id() as i32), libc::SIGKILL);
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// sshd on a loopback port, keys and config in a temporary folder.
struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    _proc: Guard,
}

impl Sshd {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for key in ["host_key", "user_key"] {
            let out = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(d.join(key))
                .output()
                .unwrap();
            assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::fs::copy(d.join("user_key.pub"), d.join("authorized_keys")).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPermitRootLogin prohibit-password\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile {}\n\
             AcceptEnv LANG\nPrintMotd no\n",
            d.join("host_key").display(),
            d.join("authorized_keys").display(),
            d.join("sshd.pid").display()
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        use std::os::unix::process::CommandExt;
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("sshd.log")).unwrap())
            .spawn()
            .expect("start sshd");
        let s = Self { dir, port, _proc: Guard(child) };
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(20), "sshd did not listen: {}", s.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A TCP forwarder that holds every chunk for `delay` before passing it on, both ways.
struct SlowProxy {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl SlowProxy {
    fn start(to: u16, delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let server = TcpStream::connect(("127.0.0.1", to)).unwrap();
                for (from, into) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)] {
                    let stopped = stopped.clone();
                    std::thread::spawn(move || pump(from, into, delay, stopped));
                }
            }
        });
        Self { port, stop }
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Copy `from` to `into`, each chunk `delay` after it was read (order kept).
fn pump(mut from: TcpStream, into: TcpStream, delay: Duration, stop: Arc<AtomicBool>) {
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    let mut out = into;
    let writer = std::thread::spawn(move || {
        for (due, chunk) in rx {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            if out.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = out.shutdown(Shutdown::Write);
    });
    let mut buf = [0u8; 16384];
    from.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    while !stop.load(Ordering::SeqCst) {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    drop(tx);
    let _ = writer.join();
}

/// The user's terminal: a tmux session (own socket) running `ssh -tt` into the inspector.
struct Session {
    term: Tmux,
    trace: PathBuf,
}

impl Session {
    fn start(sshd: &Sshd, port: u16, args: &str) -> Self {
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        let term = Tmux::run(&root(), (160, 48), |dir| {
            let remote = format!(
                "cd {} && CAMSCOPE_CACHE_DIR={} {} samples --trace {} {args}{AFTER_EXIT}",
                quote(&root().to_string_lossy()),
                quote(&dir.join("cache").to_string_lossy()),
                quote(env!("CARGO_BIN_EXE_camscope")),
                quote(&dir.join("trace.jsonl").to_string_lossy()),
            );
            let ssh = format!(
                "ssh -tt -i '{}' -p {port} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
                 -o BatchMode=yes -o LogLevel=ERROR {user}@127.0.0.1 \"{}\"",
                sshd.path("user_key").display(),
                remote.replace('"', "\\\"").replace('$', "\\$")
            );
            // COLORTERM is not set in the pane, and would not cross SSH anyway.
            format!("env -u COLORTERM {ssh}")
        });
        let trace = term.dir().join("trace.jsonl");
        Self { term, trace }
    }

    /// Wait for the screen, polling every 10 ms: keystroke-to-frame times are measured so.
    fn wait(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        self.term.wait_every(Duration::from_millis(10), what, ok)
    }

    fn trace(&self) -> String {
        std::fs::read_to_string(&self.trace).unwrap_or_default()
    }
}

impl std::ops::Deref for Session {
    type Target = Tmux;

    fn deref(&self) -> &Tmux {
        &self.term
    }
}

fn graphics_note(trace: &str) -> String {
    let first = trace.lines().find(|l| l.contains("first_frame")).expect("first_frame in the trace");
    let g = first.split("\"graphics\":\"").nth(1).expect("graphics in first_frame");
    g[..g.find('"').unwrap()].to_owned()
}

#[test]
fn keys_resize_colours_and_exit_through_ssh() {
    if !can_run("keys_resize_colours_and_exit_through_ssh") {
        return;
    }
    let sshd = Sshd::start();
    let s = Session::start(&sshd, sshd.port, "");
    s.wait("the first map over SSH", |sc| {
        sc.contains("Files 1/9") && sc.contains("Top 5 classes") && !sc.contains("loading")
    });
    let t0 = Instant::now();
    while !s.trace().contains("\"ev\":\"shown\"") {
        assert!(t0.elapsed() < DEADLINE, "no map shown: {}\nsshd: {}", s.trace(), sshd.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let note = graphics_note(&s.trace());
    // Over SSH into tmux: no COLORTERM; tmux is asked. Whatever it answers, the status bar says
    // it, and the colours on screen follow it.
    eprintln!("over SSH into tmux: {note}");
    assert!(!note.contains("COLORTERM"), "{note}");
    let screen = s.screen_escaped();
    if note.contains("24-bit colour (asked)") {
        assert!(screen.contains("38;2;") || screen.contains("48;2;"), "24-bit chosen, none on screen");
    } else {
        assert!(note.contains("256 colours"), "{note}");
        assert!(!screen.contains("38;2;") && !screen.contains("48;2;"), "256 colours chosen, 24-bit on screen");
        assert!(screen.contains("38;5;") || screen.contains("48;5;"), "no palette colours on screen");
    }
    assert!(s.screen().contains(note.split(',').next().unwrap()), "the status bar does not say {note}");

    // Keys, and the keystroke-to-frame time through SSH on loopback (tmux -> ssh -> sshd ->
    // camscope -> back), measured on the screen.
    let mut times = Vec::new();
    for (key, want) in [("j", "Files 2/9"), ("k", "Files 1/9"), ("j", "Files 2/9"), ("k", "Files 1/9")] {
        let t0 = Instant::now();
        s.keys(&[key]);
        s.wait(want, |sc| sc.contains(want));
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    eprintln!("keystroke to frame through SSH (file list cursor), ms: {times:.1?}");

    // A resize of the user's window reaches the inspector through SSH.
    s.tmux(&["resize-window", "-t", "t", "-x", "110", "-y", "36"]);
    let small = s.wait("the layout for 110x36", |sc| {
        sc.lines().count() <= 36
            && sc.lines().any(|l| l.contains("Top 5 classes"))
            && sc.lines().all(|l| l.chars().count() <= 110)
    });
    let classes_col = |sc: &str| sc.lines().find_map(|l| l.find("Top 5 classes").map(|_| l.chars().count()));
    assert!(classes_col(&small).is_some(), "{small}");

    s.keys(&["q"]);
    let end = s.wait("camscope to exit", |sc| sc.contains("RAW="));
    assert!(end.contains("EXITED=0") && end.contains("RAW=off"), "not a clean exit:\n{end}");
    assert!(!end.contains("Top 5 classes"), "the alternate screen was not left:\n{end}");
}

#[test]
fn a_second_of_latency_neither_hangs_nor_eats_keys() {
    if !can_run("a_second_of_latency_neither_hangs_nor_eats_keys") {
        return;
    }
    let sshd = Sshd::start();
    let proxy = SlowProxy::start(sshd.port, Duration::from_secs(1));
    let s = Session::start(&sshd, proxy.port, "--graphics auto");
    s.wait("the first map over the slow link", |sc| sc.contains("Files 1/9") && sc.contains("Top 5 classes"));
    let t = s.trace();
    let first = t.lines().find(|l| l.contains("first_frame")).expect("first_frame");
    let note = graphics_note(&t);
    // The answers take two seconds to come back: the inspector did not wait for them.
    assert!(note.contains("half-blocks") && note.contains("no answer in"), "{note}");
    eprintln!("over a 1 s link: {first}");
    // The late answers are consumed, not taken for keys: the list stays where it was until a key.
    std::thread::sleep(Duration::from_secs(4));
    assert!(s.screen().contains("Files 1/9"), "late answers moved the cursor:\n{}", s.screen());
    s.keys(&["j"]);
    s.wait("the key through the slow link", |sc| sc.contains("Files 2/9"));
    s.keys(&["q"]);
    let end = s.wait("camscope to exit", |sc| sc.contains("RAW="));
    assert!(end.contains("EXITED=0") && end.contains("RAW=off"), "not a clean exit:\n{end}");
}
