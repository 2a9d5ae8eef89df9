//! Taking over the terminal and always giving it back.
//!
//! [`Session::start`] enters raw mode and the alternate screen, captures the mouse and hides the
//! cursor; [`restore`] undoes all of it and is idempotent, so it can run from every exit path:
//! [`Session`]'s `Drop` (normal return, `?` errors, unwinding), the panic hook (installed by
//! `start`, it restores before the panic message is printed so the message is readable), and
//! quit signals (SIGINT, SIGTERM, SIGHUP set a flag that the event thread turns into a quit).
//! Frames are drawn inside synchronized-output brackets so terminals that support it never show
//! a half-drawn frame.

use std::io::{self, Stdout, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use crossterm::event::{DisableMouseCapture, EnableMouseCapture};
use crossterm::terminal::{
    BeginSynchronizedUpdate, EndSynchronizedUpdate, EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode,
    enable_raw_mode,
};
use crossterm::{cursor, execute, queue};
use ratatui::backend::CrosstermBackend;
use ratatui::{Frame, Terminal};

/// Whether the terminal is currently taken over (so restoring twice is harmless).
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Set by the signal handler; polled by the event thread.
static QUIT_SIGNAL: AtomicBool = AtomicBool::new(false);

pub type Term = Terminal<CrosstermBackend<Stdout>>;

/// The terminal, taken over until dropped.
pub struct Session {
    pub terminal: Term,
}

impl Session {
    /// Take over the terminal; installs the panic hook and the quit-signal handlers.
    pub fn start() -> io::Result<Self> {
        install_panic_hook();
        install_signal_handlers();
        enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        let mut out = io::stdout();
        if let Err(e) = execute!(out, EnterAlternateScreen, EnableMouseCapture, cursor::Hide) {
            restore();
            return Err(e);
        }
        let terminal = match Terminal::new(CrosstermBackend::new(io::stdout())) {
            Ok(t) => t,
            Err(e) => {
                restore();
                return Err(e);
            }
        };
        Ok(Self { terminal })
    }

    /// Draw one frame inside synchronized-output brackets.
    pub fn draw(&mut self, f: impl FnOnce(&mut Frame<'_>)) -> io::Result<()> {
        queue!(self.terminal.backend_mut(), BeginSynchronizedUpdate)?;
        let drawn = self.terminal.draw(f).map(|_| ());
        queue!(self.terminal.backend_mut(), EndSynchronizedUpdate)?;
        self.terminal.backend_mut().flush()?;
        drawn
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        restore();
    }
}

/// Give the terminal back: mouse released, alternate screen left, cursor shown, raw mode off.
/// Does nothing if it is not taken over.
pub fn restore() {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    let mut out = io::stdout();
    let _ = execute!(out, EndSynchronizedUpdate, DisableMouseCapture, LeaveAlternateScreen, cursor::Show);
    let _ = disable_raw_mode();
    let _ = out.flush();
}

fn install_panic_hook() {
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // Another thread's panic is kept for the UI's error message (printing it now would
        // land in the alternate screen); the UI thread's restores the terminal, then prints.
        if ACTIVE.load(Ordering::SeqCst) && super::note_thread_panic(info) {
            return;
        }
        restore();
        previous(info);
    }));
}

/// Whether a quit signal arrived.
pub fn quit_requested() -> bool {
    QUIT_SIGNAL.load(Ordering::SeqCst)
}

/// Whether the terminal on stdin has hung up (its window closed, the SSH connection dropped).
#[cfg(unix)]
pub fn hung_up() -> bool {
    let mut fds = libc::pollfd { fd: libc::STDIN_FILENO, events: 0, revents: 0 };
    // SAFETY: one valid pollfd, no waiting; poll does not consume input.
    let n = unsafe { libc::poll(&mut fds, 1, 0) };
    n > 0 && fds.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
}

#[cfg(not(unix))]
pub fn hung_up() -> bool {
    false
}

/// The signals that quit the inspector (Ctrl-C, `kill`, the terminal closing).
#[cfg(unix)]
const QUIT_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

#[cfg(unix)]
fn install_signal_handlers() {
    extern "C" fn on_signal(_: libc::c_int) {
        // Only an atomic store: async-signal-safe.
        QUIT_SIGNAL.store(true, Ordering::SeqCst);
    }
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for sig in QUIT_SIGNALS {
        // SAFETY: installing a handler that only stores to an atomic.
        unsafe {
            libc::signal(sig, handler);
        }
    }
}

#[cfg(not(unix))]
fn install_signal_handlers() {}

/// Give the quit signals their default action back (end the process), once the terminal is
/// restored and nothing is left to clean up but waiting for threads.
#[cfg(unix)]
pub fn default_signals() {
    for sig in QUIT_SIGNALS {
        // SAFETY: restoring the default disposition.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
}

#[cfg(not(unix))]
pub fn default_signals() {}
