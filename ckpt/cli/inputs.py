"""What the command line reads: files (regular files only, read up to a cap, never a device
or a FIFO that could hang), chain and plan JSON, sizes, budgets and strategy names. Every
mistake is a ``UsageError`` whose one line says what is wrong and what would be right.

>>> parse_budget("512MiB")
536870912
>>> parse_strategies(["optimal,sqrt", "optimal"])
['optimal', 'sqrt']
"""
import math
import os
import re
import stat

from .. import planner
from ..planner import Chain, Op, format_size, parse_size
from ..planner.chain import load_json
from ..planner.errors import ChainError
from ..planner.units import MAX_BYTES

__all__ = ["UsageError", "EXIT_OK", "EXIT_INVALID", "EXIT_USAGE", "STRATEGY_ORDER",
           "MAX_READ_BYTES", "check_regular_file", "read_file",
           "read_json", "chain_from_file", "load_ops", "split_values", "parse_budget",
           "parse_strategies", "parse_strategy"]

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
STRATEGY_ORDER = ("store_all", "sqrt", "greedy", "recursive", "revolve", "optimal",
                  "min_memory", "recompute_all")
MAX_READ_BYTES = 64 * 2 ** 20     # a chain of 100,000 stages is ~25 MiB of JSON


class UsageError(Exception):
    """A mistake in the command line or its inputs: printed as one line, exit status 2."""


# ---- files --------------------------------------------------------------------------------
_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
               (stat.S_ISSOCK, "a socket"))


def _kind(mode):
    return next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")


def check_regular_file(path, what):
    """The size of ``path`` if it is an existing regular file; otherwise a ``UsageError``
    naming what it is instead (a device or a FIFO is never opened: reading one could run
    forever or block). ``what`` says what was expected.

    >>> check_regular_file("/dev/null", "a chain JSON file")
    Traceback (most recent call last):
    ...
    ckpt.cli.inputs.UsageError: '/dev/null' is a character device, not a regular file (expected a chain JSON file)
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UsageError(f"no such file: {path!r} (expected {what})") from None
    except OSError as e:
        raise UsageError(f"cannot read {path!r}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{path!r} is {_kind(st.st_mode)}, not a regular file "
                         f"(expected {what})")
    return st.st_size


def _too_big(path, size, limit):
    return UsageError(f"{path!r} is {format_size(size)}; input files are read up to "
                      f"{format_size(limit)} (a chain or plan JSON is far smaller)")


def read_file(path, what, limit=MAX_READ_BYTES):
    """The bytes of the regular file ``path``, at most ``limit`` of them (more is a
    ``UsageError`` that names the cap). The file is checked with ``os.stat`` before it is
    opened, and opened without blocking, so a FIFO swapped in between cannot hang.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile(suffix=".json") as f:
    ...     _ = f.write(b"[1, 2]"); f.flush()
    ...     read_file(f.name, "a JSON file")
    b'[1, 2]'
    """
    size = check_regular_file(path, what)
    if size > limit:
        raise _too_big(path, size, limit)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise UsageError(f"cannot read {path!r}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UsageError(f"{path!r} is {_kind(mode)}, not a regular file "
                             f"(expected {what})")
        try:
            data = f.read(limit + 1)
        except OSError as e:
            raise UsageError(f"cannot read {path!r}: {e.strerror}") from None
    if len(data) > limit:
        raise _too_big(path, len(data), limit)
    return data


def read_json(path, kind, what):
    """The JSON value in file ``path`` (UTF-8, a byte-order mark allowed). Malformed,
    binary or too deeply nested text is a ``UsageError`` naming the file. ``kind`` names
    the content ("chain", "plan") in messages; ``what`` says what file was expected.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile(suffix=".json") as f:
    ...     _ = f.write(b"\\xef\\xbb\\xbf" + b"[" * 100000); f.flush()
    ...     read_json(f.name, "chain", "a chain JSON file")
    Traceback (most recent call last):
    ...
    ckpt.cli.inputs.UsageError: /...json: chain JSON nest... too deeply...
    """
    data = read_file(path, what)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a text (UTF-8) file; expected {kind} JSON") from None
    try:
        return load_json(text, kind)
    except ChainError as e:
        raise UsageError(f"{path}: {e}") from None
    except RecursionError:
        raise UsageError(f"{path}: {kind} JSON is nested too deeply; a ckpt {kind} JSON is "
                         "an object of stages, 3 levels deep") from None


def chain_from_file(path, what):
    """A ``Chain`` from a chain JSON file (or a plan JSON file, which carries its chain).

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
    ...     _ = f.write(planner.zoo.uniform(3).to_json()); f.flush()
    ...     len(chain_from_file(f.name, "a chain JSON file"))
    3
    """
    data = read_json(path, "chain", what)
    if isinstance(data, dict) and data.get("format") == "ckpt.plan" and "chain" in data:
        data = data["chain"]
    try:
        return Chain.from_dict(data)
    except ChainError as e:
        raise UsageError(f"{path}: {e}") from None
    except RecursionError:
        raise UsageError(f"{path}: chain JSON is nested too deeply; a ckpt chain JSON is an "
                         "object of stages, 3 levels deep") from None


def load_ops(path):
    """The op list of a plan JSON file (``ckpt plan --json`` output, or a bare list of
    ``"kind stage"`` strings) and the plan's own data (or None).

    >>> import json, tempfile
    >>> with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
    ...     _ = f.write(json.dumps(["forward_save 1", "backward 1"])); f.flush()
    ...     [str(op) for op in load_ops(f.name)[0]]
    ['forward_save 1', 'backward 1']
    """
    data = read_json(path, "plan", "a plan JSON file, e.g. from 'ckpt plan ... -o plan.json'")
    meta = None
    if isinstance(data, dict):
        if data.get("format", "ckpt.plan") != "ckpt.plan":
            raise UsageError(f"{path}: format is {data.get('format')!r}, expected 'ckpt.plan' "
                             "(the second argument is the plan; the first is the chain)")
        if "ops" not in data:
            raise UsageError(f"{path}: plan JSON lacks 'ops' (a list of 'kind stage' strings)")
        meta, data = data, data["ops"]
    if not isinstance(data, list):
        raise UsageError(f"{path}: expected a plan object or a list of ops like "
                         "'forward_save 1'")
    ops = []
    for k, o in enumerate(data):
        try:
            ops.append(Op.parse(o))
        except (ValueError, TypeError) as e:
            raise UsageError(f"{path}: ops[{k}]: {e}") from None
    return ops, meta


# ---- sizes and names ----------------------------------------------------------------------
def split_values(values):
    """Comma- or space-separated values of a repeated option, flattened.

    >>> split_values(["a,b", "c", " , "])
    ['a', 'b', 'c']
    """
    out = []
    for v in values or ():
        out.extend(p for p in str(v).replace(",", " ").split() if p)
    return out


_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$")


def is_bare_number(text):
    """Whether ``text`` is a number without a unit.

    >>> is_bare_number("3.5"), is_bare_number("8"), is_bare_number("8MiB")
    (True, True, False)
    """
    m = _SIZE.match(str(text))
    return bool(m) and not m.group(2)


def parse_budget(text, chain=None, what="budget"):
    """Bytes from a budget on the command line: a whole number of bytes or a size with a
    unit (``ckpt.planner.parse_size``). Negative or fractional bare numbers (``3.5`` would
    be 4 bytes), unknown units and sizes too large for the planner are ``UsageError``s; with
    ``chain``, a negative budget's message gives the chain's least feasible peak.

    >>> parse_budget("1.5GiB"), parse_budget("4096")
    (1610612736, 4096)
    >>> parse_budget("3.5")
    Traceback (most recent call last):
    ...
    ckpt.cli.inputs.UsageError: budget 3.5: a number without a unit is bytes and must be whole; give a unit, like 3.5MiB
    """
    text = str(text)
    if text.strip().startswith("-"):
        hint = f" (this chain needs at least {format_size(chain.min_budget)})" if chain else ""
        raise UsageError(f"{what} {text} is negative; give a size like 512MiB{hint}")
    m = _SIZE.match(text)
    if m and not m.group(2) and math.isfinite(float(m.group(1))) \
            and not float(m.group(1)).is_integer():
        raise UsageError(f"{what} {text}: a number without a unit is bytes and must be "
                         f"whole; give a unit, like {text.strip()}MiB")
    try:
        return parse_size(text, what=what)
    except (TypeError, ValueError, OverflowError) as e:
        raise UsageError(" ".join(str(e).split())) from None


def parse_strategies(values, option="--strategies"):
    """Strategy names from an option's values (comma or space separated), in order, without
    repeats; None (option not given) means every strategy. Values that name no strategy at
    all (``''``, ``','``) are a mistake, not a request for the defaults.

    >>> parse_strategies(None) == list(STRATEGY_ORDER)
    True
    >>> parse_strategies([" , "])
    Traceback (most recent call last):
    ...
    ckpt.cli.inputs.UsageError: --strategies ' , ' names no strategy; choose from store_all, sqrt, greedy, recursive, revolve, optimal, min_memory, recompute_all
    """
    choose = f"choose from {', '.join(STRATEGY_ORDER)}"
    if values is None:
        return list(STRATEGY_ORDER)
    names = split_values(values)
    if not names:
        raise UsageError(f"{option} {' '.join(values)!r} names no strategy; {choose}")
    for n in names:
        if n not in planner.STRATEGIES:
            raise UsageError(f"unknown strategy {n!r}; {choose}")
    return list(dict.fromkeys(names))


def parse_strategy(value):
    """The one strategy ``ckpt plan --strategy`` names.

    >>> parse_strategy("revolve")
    'revolve'
    >>> parse_strategy("optimal,sqrt")
    Traceback (most recent call last):
    ...
    ckpt.cli.inputs.UsageError: --strategy takes one strategy, got 2 (optimal, sqrt); compare several with 'ckpt sweep --strategies optimal,sqrt'
    """
    names = parse_strategies([value], "--strategy")
    if len(names) > 1:
        raise UsageError(f"--strategy takes one strategy, got {len(names)} ({', '.join(names)});"
                         f" compare several with 'ckpt sweep --strategies {','.join(names)}'")
    return names[0]


def budget_count(parts):
    """The count of ``--budgets N`` (a lone whole number), or None for a list of sizes.

    >>> budget_count(["12"]), budget_count(["12MiB"]), budget_count(["1", "2"])
    (12, None, None)
    """
    if len(parts) != 1 or not is_bare_number(parts[0]):
        return None
    number = float(parts[0])
    if not number.is_integer() or not 1 <= number <= 1000:
        in_mib = f"{parts[0]}MiB or " if 0 < number * 2**20 <= MAX_BYTES else ""
        raise UsageError(f"--budgets {parts[0]}: give a count from 1 to 1000 (a whole number),"
                         f" or sizes with a unit, like {in_mib}512MiB,1GiB")
    return int(number)


def check_budgets_text(values):
    """Check ``--budgets`` values before any work (a count, or sizes): the same errors as
    later, except that negative sizes wait for the chain, whose minimum the message gives.

    >>> check_budgets_text(["8"]); check_budgets_text(None)
    >>> check_budgets_text([","])
    Traceback (most recent call last):
    ...
    ckpt.cli.inputs.UsageError: --budgets ',' gives no budget; give a count (e.g. 8) or sizes like 512MiB,1GiB
    """
    if values is None:
        return
    parts = split_values(values)
    if not parts:
        raise UsageError(f"--budgets {' '.join(values)!r} gives no budget; give a count "
                         "(e.g. 8) or sizes like 512MiB,1GiB")
    if budget_count(parts) is None:
        for p in parts:
            if not p.strip().startswith("-"):
                parse_budget(p, what="--budgets value")

