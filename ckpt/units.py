"""Byte sizes at the edges: parse ``"512MiB"`` / ``"2GB"`` / ``4096`` into bytes, print bytes
back as ``"512.0 MiB"``. Everything inside ckpt is an ``int`` number of bytes; the planner,
the reports, the profiler's tables, plots and the CLI print them with ``format_size``. Names
(of chains, stages and models) are printed and drawn through ``printable``.

>>> parse_size("512MiB"), parse_size("2GB"), parse_size(4096)
(536870912, 2000000000, 4096)
>>> format_size(536870912)
'512.0 MiB'
"""
import math
import numbers
import re

__all__ = ["parse_size", "format_size", "format_size_exact", "printable", "distinct_sizes",
           "distinct_numbers", "MAX_BYTES"]

# sizes live in int64 numpy arrays inside the planner
MAX_BYTES = 2**63 - 1

_UNITS = {"": 1, "b": 1,
          "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
          "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$")


def parse_size(size, what="size", whole=False):
    """Bytes (an ``int``) from a number of bytes or a string with a unit.

    Decimal units (kB, MB, GB, TB) are powers of 1000, binary ones (KiB, MiB, GiB, TiB, and the
    bare K/M/G/T) powers of 1024; case does not matter. A fractional number of bytes is
    rounded up, unless ``whole=True``, which refuses it. ``what`` names the value in error
    messages. Sizes above ``MAX_BYTES`` (2**63 - 1, what an int64 holds) are too large.

    >>> parse_size("1.5 KiB"), parse_size("3e3"), parse_size(2.0)
    (1536, 3000, 2)
    >>> parse_size("12 parsecs")
    Traceback (most recent call last):
    ...
    ValueError: size '12 parsecs': unknown unit 'parsecs' (use B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)
    >>> parse_size("1e400", what="budget")
    Traceback (most recent call last):
    ...
    ValueError: budget '1e400' is too large: at most 9223372036854775807 bytes (8.0 EiB)
    >>> parse_size(1.5, what="output_bytes", whole=True)
    Traceback (most recent call last):
    ...
    ValueError: output_bytes must be a whole number of bytes, got 1.5
    """
    if isinstance(size, bool):
        raise TypeError(f"{what} must be a number of bytes or a string like '512MiB', got {size!r}")
    if isinstance(size, numbers.Integral):
        value = int(size)
    elif isinstance(size, numbers.Real):
        exact = float(size)
        if exact != exact:
            raise ValueError(f"{what} must be a number of bytes, got {size!r}")
        value = _whole(exact, size, what, whole)
    elif isinstance(size, str):
        m = _SIZE.match(size)
        if m is None:
            raise ValueError(f"{what} {size!r}: expected a number with an optional unit, "
                             "like '512MiB' or '2GB'")
        unit = m.group(2).lower()
        if unit not in _UNITS:
            raise ValueError(f"{what} {size!r}: unknown unit {m.group(2)!r} "
                             "(use B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)")
        value = _whole(float(m.group(1)) * _UNITS[unit], size, what, whole)
    else:
        raise TypeError(f"{what} must be a number of bytes or a string like '512MiB', "
                        f"got {type(size).__name__}")
    if value < 0:
        raise ValueError(f"{what} must be non-negative, got {size!r}")
    if value > MAX_BYTES:
        raise ValueError(_too_large(what, size))
    return value


def _too_large(what, size):
    return f"{what} {size!r} is too large: at most {MAX_BYTES} bytes (8.0 EiB)"


def _whole(exact, size, what, whole):
    """Bytes from a float: rounded up (or refused when ``whole`` and not whole)."""
    if math.isinf(exact):
        if exact < 0:
            raise ValueError(f"{what} must be non-negative, got {size!r}")
        raise ValueError(_too_large(what, size))
    if whole and not exact.is_integer():
        raise ValueError(f"{what} must be a whole number of bytes, got {size!r}")
    return math.ceil(exact)


def format_size(nbytes, digits=1):
    """A byte count for people: binary units, ``digits`` decimals (whole ``B`` below 1 KiB).

    >>> format_size(0), format_size(1023), format_size(1536), format_size(12.5 * 2**20)
    ('0 B', '1023 B', '1.5 KiB', '12.5 MiB')
    >>> format_size(3 * 2**40), format_size(2**63 - 1), format_size(3 * 2**30 + 2**20, 3)
    ('3.0 TiB', '8.0 EiB', '3.001 GiB')
    >>> format_size(float("nan"))
    Traceback (most recent call last):
    ...
    ValueError: format_size needs a finite number of bytes, got nan
    """
    if isinstance(nbytes, bool) or not isinstance(nbytes, numbers.Real):
        raise TypeError(f"format_size needs a number of bytes, got {type(nbytes).__name__}")
    n = float(nbytes)
    if not math.isfinite(n):
        raise ValueError(f"format_size needs a finite number of bytes, got {nbytes!r}")
    if abs(n) < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        n /= 1024.0
        if abs(n) < 1024 or unit == "EiB":
            return f"{n:.{digits}f} {unit}"


def format_size_exact(nbytes):
    """``format_size`` with the exact count beside it, for messages about budgets.

    >>> format_size_exact(3 * 2**20 + 5)
    '3.0 MiB (3145733 bytes)'
    """
    return f"{format_size(nbytes)} ({int(nbytes)} bytes)"


def printable(text):
    """``text`` with every character a terminal would act on (newline, tab, NUL, ESC, other
    controls and invisible format characters) escaped as Python writes it in a string.

    >>> print(printable("a\\tb\\x00c"))
    a\\tb\\x00c
    """
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def distinct_sizes(values):
    """Each byte count as ``format_size`` prints it, with the fewest decimals (one at
    least) at which different counts read differently; exact bytes if six are not enough.

    >>> distinct_sizes([2**20, 2**21])
    ['1.0 MiB', '2.0 MiB']
    >>> distinct_sizes([2**30, 2**30 + 1])
    ['1073741824 B', '1073741825 B']
    """
    formats = [format_size] + [lambda v, d=d: format_size(v, d) for d in range(2, 7)]
    return _fewest(values, formats + [lambda v: f"{int(v)} B"])


def _fewest(values, formats):
    """The texts of ``values`` in the first of ``formats`` that tells them all apart (the
    last format is used if none does)."""
    values = list(values)
    for fmt in formats:
        texts = [fmt(v) for v in values]
        if len(set(texts)) == len(set(values)):
            break
    return texts


def distinct_numbers(values, digits=4):
    """Each number with ``digits`` significant digits, or more where that is what it takes
    to tell different numbers apart.

    >>> distinct_numbers([2.971730e12, 2.971705e12, 3.155e12])
    ['2.97173e+12', '2.97170e+12', '3.15500e+12']
    >>> distinct_numbers([1.0, 2.0])
    ['1', '2']
    """
    return _fewest(values, [lambda v, d=d: f"{v:.{d}g}" if d == digits else f"{v:#.{d}g}"
                            for d in range(digits, 18)])
