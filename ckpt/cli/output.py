"""What the command line writes: names made safe for a terminal, sizes printed with enough
digits to tell them apart, output paths checked before any work, files written whole or not
at all (a temporary file renamed into place), standard output whose failure is one line,
and a progress line on a terminal's stderr.

>>> printable("block\\x1b[2J\\n1")
'block\\\\x1b[2J\\\\n1'
>>> distinct_sizes([3 * 2**30, 3 * 2**30 + 2**24])
['3.00 GiB', '3.02 GiB']
"""
import os
import sys
import tempfile
import threading
import time

from ..units import distinct_numbers, distinct_sizes, printable
from .inputs import UsageError

__all__ = ["printable", "distinct_sizes", "distinct_numbers", "check_output_path",
           "check_output_dir",
           "write_text", "save_figure", "OutputError", "Stdout", "Progress", "FIGURE_EXTS"]

FIGURE_EXTS = (".png", ".svg", ".pdf")


def _writable_dir(path, what):
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise UsageError(f"cannot write {what} {path!r}: no directory "
                         f"{os.path.dirname(path) or '.'!r} (create it first)")
    if not os.access(d, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write {what} {path!r}: directory "
                         f"{os.path.dirname(path) or '.'!r} is not writable")


def check_output_path(path, what="output", exts=None):
    """Fail now, before any work, if ``path`` could not be written: its directory must exist
    and be writable, the path must not be a directory or a device, and with ``exts`` its
    extension must be one of them.

    >>> check_output_path("no_such_dir/t.png", "plot", FIGURE_EXTS)
    Traceback (most recent call last):
    ...
    ckpt.cli.inputs.UsageError: cannot write plot 'no_such_dir/t.png': no directory 'no_such_dir' (create it first)
    """
    if exts and os.path.splitext(path)[1].lower() not in exts:
        raise UsageError(f"cannot write {what} {path!r}: use a file name ending in "
                         f"{', '.join(exts[:-1])} or {exts[-1]}")
    if os.path.isdir(path):
        raise UsageError(f"cannot write {what} {path!r}: it is a directory; give a file name")
    if os.path.exists(path) and not os.path.isfile(path):
        raise UsageError(f"cannot write {what} {path!r}: it is not a regular file")
    _writable_dir(path, what)


def check_output_dir(path):
    """Fail now if directory ``path`` could not be created or written into.

    >>> check_output_dir("/dev/null/x")
    Traceback (most recent call last):
    ...
    ckpt.cli.inputs.UsageError: cannot create output directory '/dev/null/x': '/dev/null' is not a directory
    """
    if os.path.isdir(path):
        if not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(f"cannot write into {path!r}: the directory is not writable")
        return
    parent = os.path.abspath(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UsageError(f"cannot create output directory {path!r}: {parent!r} is not a "
                         "directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot create output directory {path!r}: {parent!r} is not "
                         "writable")


def _replace_into(path, write):
    """Run ``write(temp_path)`` on a temporary file beside ``path``, then rename it into
    place: ``path`` is whole or untouched, never half written."""
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as e:
        raise UsageError(f"cannot write {path!r}: {e.strerror or e}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_text(path, text):
    """Write ``text`` (with a final newline) to ``path``, whole or not at all.

    >>> import tempfile, os
    >>> d = tempfile.mkdtemp(); p = os.path.join(d, "x.json")
    >>> write_text(p, "{}") == p and open(p).read()
    '{}\\n'
    """
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text if text.endswith("\n") else text + "\n")
    return _replace_into(path, write)


def save_figure(fig, path):
    """Save a matplotlib figure to ``path`` (.png, .svg or .pdf), whole or not at all, and
    close it. Returns ``path``."""
    check_output_path(path, "a drawing", FIGURE_EXTS)
    ext = os.path.splitext(path)[1].lower()[1:]
    try:
        return _replace_into(path, lambda tmp: fig.savefig(tmp, dpi=110, format=ext))
    finally:
        import matplotlib.pyplot as plt
        plt.close(fig)


class OutputError(Exception):
    """Standard output could not be written (a full disk, ``/dev/full``)."""


class Stdout:
    """A text stream whose write failures (other than a closed pipe, which ends the program
    quietly) become ``OutputError``: one line on stderr instead of a traceback.

    >>> import io
    >>> out = Stdout(io.StringIO()); _ = out.write("ok"); out.stream.getvalue()
    'ok'
    """

    def __init__(self, stream):
        self.stream = stream

    def _guard(self, call, *args):
        try:
            return call(*args)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise OutputError(f"cannot write to standard output: {e.strerror or e}") from None

    def write(self, text):
        return self._guard(self.stream.write, text)

    def flush(self):
        return self._guard(self.stream.flush)


class Progress:
    """A progress line on a terminal's stderr: drawn only when the stream is a terminal and
    the work has taken longer than ``delay`` seconds, redrawn by a background thread (so a
    long single step shows its elapsed time) and erased by ``close()``. ``total=None``
    shows the step and the seconds, without a bar.

    >>> import io
    >>> out = io.StringIO()
    >>> p = Progress(4, stream=out, enabled=True, delay=0)
    >>> p.update(2, "sqrt"); p.close()
    >>> "2/4" in out.getvalue()
    True
    >>> Progress(4, stream=io.StringIO()).enabled   # not a terminal: off
    False
    """

    DELAY = 0.5

    def __init__(self, total, stream=None, enabled=None, delay=None, width=28, label=""):
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            try:
                enabled = bool(isatty and isatty())
            except (OSError, ValueError):
                enabled = False
        self.enabled, self.total, self.width = enabled, total, width
        self.delay = self.DELAY if delay is None else delay
        self.start, self.last = time.monotonic(), float("-inf")
        self.done, self.label, self.shown, self.closed = 0, printable(label), 0, False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        if self.enabled:
            self._thread = threading.Thread(target=self._tick, daemon=True)
            self._thread.start()

    def _tick(self):
        if self._stop.wait(self.delay):
            return
        while not self._stop.is_set():
            self._draw(tick=True)
            self._stop.wait(0.5)

    def update(self, done, label=""):
        """Record that ``done`` steps are finished and the next is ``label``."""
        if not self.enabled:
            return
        self.done, self.label = done, printable(label)
        if time.monotonic() - self.start >= self.delay:
            self._draw(force=self.total is not None and done >= self.total)

    def _draw(self, force=False, tick=False):
        with self._lock:            # updates redraw at most 20 times a second; ticks always
            now = time.monotonic()
            if self.closed or (not (force or tick) and now - self.last < 0.05):
                return
            if not tick:
                self.last = now
            if self.total is None:
                line = f"\r{self.label} ({now - self.start:.0f} s)"
            else:
                total = max(self.total, 1)
                fill = int(self.width * min(self.done, total) / total)
                line = (f"\r[{'#' * fill}{'.' * (self.width - fill)}] {self.done}/{total} "
                        f"{self.label}")
            try:
                self.stream.write(line.ljust(self.shown))
                self.stream.flush()
            except (OSError, ValueError):
                self.closed = True
                return
            self.shown = len(line)

    def close(self):
        """Stop drawing and erase the line."""
        self._stop.set()
        with self._lock:
            self.closed = True
            if self.shown:
                try:
                    self.stream.write("\r" + " " * self.shown + "\r")
                    self.stream.flush()
                except (OSError, ValueError):
                    pass
                self.shown = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
