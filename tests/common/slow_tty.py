#!/usr/bin/env python3
"""A slow link between a terminal and a program, for the graphics tests: runs COMMAND on a
pseudo-terminal of its own and passes everything the terminal sends (keys, and the answers to
the program's queries) on DELAY seconds late, while the program's output reaches the terminal
at once; the window size follows the terminal's. What an SSH link with DELAY seconds of
latency one way does to the terminal's answers, without sshd.

Usage: slow_tty.py DELAY COMMAND [ARG...]
"""
import fcntl
import os
import pty
import select
import signal
import sys
import termios
import time
import tty


def main() -> int:
    delay = float(sys.argv[1])
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(sys.argv[2], sys.argv[2:])

    def copy_size(*_):
        size = fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(fd, termios.TIOCSWINSZ, size)

    copy_size()
    signal.signal(signal.SIGWINCH, copy_size)
    saved = termios.tcgetattr(0)
    tty.setraw(0)
    pending = []  # (due, bytes) from the terminal, in order
    try:
        while True:
            now = time.monotonic()
            while pending and pending[0][0] <= now:
                os.write(fd, pending.pop(0)[1])
            timeout = max(0.0, pending[0][0] - now) if pending else 0.5
            try:
                ready, _, _ = select.select([0, fd], [], [], timeout)
            except InterruptedError:
                continue
            if fd in ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    break
                if not data:
                    break
                os.write(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if not data:
                    break
                pending.append((time.monotonic() + delay, data))
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, saved)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
