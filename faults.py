"""How a run stops when something goes wrong: signals, non-finite numbers, unwritable
places and failed writes each end in one line on stderr and a known exit code, never in
a traceback, and never with half a file on disk.

    exit code 2    bad input (arguments.ConfigError), checked before any work
    exit code 1    the run failed (a non-finite loss or gradient, a failed write)
    exit code 130  stopped by SIGINT (Ctrl-C), 143 by SIGTERM

Nothing here imports torch.
"""

import os
import signal
import sys
import tempfile
import threading

from arguments import ConfigError, exit_on_config_error

# The environment variable of `fault_point`, e.g. RAM_FAULT=train_step:3:SIGINT.
FAULT_ENV = "RAM_FAULT"


class Stopped(Exception):
    """A run that ended early for a reason other than bad input: one line, exit `code`."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


class Interrupted(Stopped):
    """Stopped by a signal: exit code 128 + the signal's number (SIGINT 130, SIGTERM 143)."""

    def __init__(self, message, signum):
        super().__init__(message, 128 + signum)
        self.signum = signum


def exit_cleanly(entry, prog):
    """Run entry() under arguments.exit_on_config_error (a ConfigError exits 2); a Stopped
    exits with its code, a KeyboardInterrupt that no handler caught 130, each with one line
    on stderr."""

    def run():
        try:
            return entry()
        except Stopped as err:
            message, code = str(err), err.code
        except KeyboardInterrupt:
            message, code = "interrupted (SIGINT): nothing half-written was left", 130
        print(f"{prog}: {message}", file=sys.stderr)
        sys.exit(code)

    return exit_on_config_error(run, prog)


class SignalGuard:
    """Within `with SignalGuard(defer=True) as guard:` the first SIGINT or SIGTERM only sets
    guard.signum, and the loop stops at its next safe point (`guard.stop_if_asked`); a second
    one raises Interrupted at once. With defer=False the first one raises at once (SIGTERM
    then unwinds like Ctrl-C, so temporary files are removed). The previous handlers come
    back on exit. Outside the main thread it does nothing, and a signal the process was
    started ignoring (SIGINT under nohup or `&`) stays ignored."""

    def __init__(self, *, defer):
        self.defer = defer
        self.signum = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        return False

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.defer and self.signum is None:
            self.signum = signum
            print(f"\n[!] {name}: stopping at the end of this step ({name} again stops at once)",
                  file=sys.stderr, flush=True)
            return
        raise Interrupted(f"stopped by {name}", signum)

    def stop_if_asked(self, where):
        """Raise Interrupted naming `where` when a signal came since entering."""
        if self.signum is not None:
            name = signal.Signals(self.signum).name
            raise Interrupted(f"stopped by {name} {where}", self.signum)


_fault_counts = {}


def fault_point(name):
    """A named point where the tests inject a real signal: with RAM_FAULT=name:n:SIGNAL in the
    environment, the n-th time the process reaches `name` it sends SIGNAL (SIGINT, SIGTERM,
    SIGKILL) to itself. Does nothing otherwise."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    point, count, signame = spec.split(":")
    if point != name:
        return
    _fault_counts[name] = _fault_counts.get(name, 0) + 1
    if _fault_counts[name] == int(count):
        os.kill(os.getpid(), getattr(signal, signame))


def probe_writable(path):
    """None when a file can be written in folder `path` (created if missing), else why not.
    Leaves nothing behind: folders it had to create and its test file are removed again."""
    created = []
    folder = os.path.abspath(path)
    try:
        missing = []
        while not os.path.isdir(folder):
            if os.path.exists(folder):
                return f"{folder} exists and is not a folder"
            missing.append(folder)
            parent = os.path.dirname(folder)
            if parent == folder:
                break
            folder = parent
        for name in reversed(missing):
            os.mkdir(name)
            created.append(name)
        fd, tmp = tempfile.mkstemp(dir=os.path.abspath(path), prefix=".probe_")
        os.close(fd)
        os.remove(tmp)
        return None
    except OSError as err:
        return err.strerror or type(err).__name__
    finally:
        for name in reversed(created):
            try:
                os.rmdir(name)
            except OSError:
                pass


def check_writable(places):
    """places: {flag: path}; a ConfigError naming the first flag whose folder cannot be
    created or written, before any work starts."""
    for flag, path in places.items():
        why = probe_writable(path)
        if why is not None:
            raise ConfigError(f"{flag}={path} is not a writable folder ({why})")
