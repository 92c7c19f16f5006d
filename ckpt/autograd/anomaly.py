"""Anomaly detection (torch.autograd's ``detect_anomaly`` / ``set_detect_anomaly``).

While it is on, every recorded op keeps the stack of the forward call that made it (and,
recorded by a backward, the node whose backward that was); if a node's backward raises, a
warning names the node and shows that stack, then one per such parent, before the error
propagates; with ``check_nan`` a node whose backward returns NaN raises ``RuntimeError``
naming it. Costs what torch's costs: a stack per op, a check per gradient.
"""
import os
import sys
import traceback
import warnings

import numpy as np

from .engine import current_pass
from .node import Extensions
from .tensor import Tensor


_AUTOGRAD_DIR = os.path.dirname(__file__)


class _State:
    enabled = False
    check_nan = True


class _Watcher:
    """Records each new node's forward stack and, inside a backward pass, the node whose
    rule recorded it (its parent); checks every node's results and reports its failure."""

    def on_op(self, out, node):
        if node is not None and "forward_stack" not in node.__dict__:
            frames = traceback.extract_stack()
            while frames and frames[-1].filename.startswith(_AUTOGRAD_DIR):  # up to the caller
                frames.pop()
            node.__dict__["forward_stack"] = "".join(traceback.format_list(frames))
            running = current_pass()
            node.__dict__["anomaly_parent"] = running and running.running

    def finished(self, node, grads):
        if not _State.check_nan:
            return
        for i, g in enumerate(grads):
            data = g.data if isinstance(g, Tensor) else g
            if isinstance(data, np.ndarray) and data.dtype.kind in "fc" and np.isnan(data).any():
                raise RuntimeError(f"Function '{node.name()}' returned nan values in its {i}th output.")

    def failed(self, node, error):
        """A node's backward raised: warn with its forward stack, then its parents'."""
        if node is None or getattr(error, "anomaly_reported", False):
            return
        error.anomaly_reported = True
        _warn_stack(node, f"Error detected in {node.name()}. ", "caused the error")
        node = node.__dict__.get("anomaly_parent")
        while node is not None:
            _warn_stack(node, f"\n\nPrevious calculation was induced by {node.name()}. ",
                        "induced the previous calculation")
            node = node.__dict__.get("anomaly_parent")


_WATCHER = _Watcher()


def _warn_stack(node, opening, what):
    stack = node.__dict__.get("forward_stack")
    if stack is None:
        message = (f"Error detected in {node.name()}. No forward pass information available. "
                   "Enable detect anomaly during forward pass for more information.")
    else:
        message = f"{opening}Traceback of forward call that {what}:\n{stack}"
    try:
        warnings.warn(message, UserWarning, stacklevel=3)
    except Warning as raised:  # warnings as errors: the error in flight wins; printed, as torch
        print(f"{type(raised).__name__}: {raised}", file=sys.stderr)


def _set(enabled, check_nan):
    _State.enabled, _State.check_nan = bool(enabled), bool(check_nan)
    observers = Extensions.observers
    if enabled and _WATCHER not in observers:
        observers.append(_WATCHER)
    elif not enabled and _WATCHER in observers:
        observers.remove(_WATCHER)
    Extensions.anomaly = _WATCHER if enabled else None
    Extensions.refresh()


def is_anomaly_enabled():
    """Whether anomaly detection is on.

    >>> import ckpt
    >>> ckpt.is_anomaly_enabled()
    False
    """
    return _State.enabled


def is_anomaly_check_nan_enabled():
    """Whether anomaly detection checks backward results for NaN.

    >>> import ckpt
    >>> ckpt.is_anomaly_check_nan_enabled()
    True
    """
    return _State.check_nan


class set_detect_anomaly:
    """Turn anomaly detection on or off now; as a context manager, restore on exit.

    >>> import ckpt
    >>> with ckpt.autograd.set_detect_anomaly(True, check_nan=False):
    ...     ckpt.is_anomaly_enabled(), ckpt.is_anomaly_check_nan_enabled()
    (True, False)
    >>> ckpt.is_anomaly_enabled()
    False
    """

    def __init__(self, mode, check_nan=True):
        self.previous = (_State.enabled, _State.check_nan)
        _set(mode, check_nan)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _set(*self.previous)
        return False


class detect_anomaly:
    """Context manager with anomaly detection on, as torch's: a failing
    backward warns with the forward stack of the op that failed.

    >>> import ckpt, warnings
    >>> x = ckpt.tensor([-1.0], requires_grad=True)
    >>> with warnings.catch_warnings(record=True), ckpt.autograd.detect_anomaly():
    ...     y = x.sqrt()     # nan, whose gradient is nan
    ...     try:
    ...         y.backward()
    ...     except RuntimeError as error:
    ...         print(error)
    Function 'SqrtBackward0' returned nan values in its 0th output.
    """

    def __init__(self, check_nan=True):
        self.check_nan = check_nan
        self.previous = []

    def __enter__(self):
        warnings.warn("Anomaly Detection has been enabled. This mode will increase the runtime "
                      "and should only be enabled for debugging.", UserWarning, stacklevel=2)
        self.previous.append((_State.enabled, _State.check_nan))
        _set(True, self.check_nan)
        return self

    def __exit__(self, *exc):
        _set(*self.previous.pop())
        return False
