"""Anomaly detection (torch.autograd's ``detect_anomaly`` / ``set_detect_anomaly``).

While it is on, every recorded op keeps the stack of the forward call that made it; if a
node's backward raises, a warning names the node and shows that stack before the error
propagates; with ``check_nan`` a node whose backward returns NaN raises ``RuntimeError``
naming it. Costs what torch's costs: a stack per op, a check per gradient.
"""
import traceback
import warnings

import numpy as np

from .node import Extensions
from .tensor import Tensor


class _State:
    enabled = False
    check_nan = True


class _Recorder:
    """The observer that keeps each node's forward stack and adds the NaN check."""

    def on_op(self, out, node):
        if node is not None and "forward_stack" not in node.__dict__:
            node.__dict__["forward_stack"] = "".join(traceback.format_stack()[:-3])
            node.register_hook(_nan_check(node.name()))


_RECORDER = _Recorder()


def _nan_check(name):
    def check(grad_inputs, grad_outputs):
        if not (_State.enabled and _State.check_nan):  # as in force when backward runs, as torch
            return
        for i, g in enumerate(grad_inputs):
            data = g.data if isinstance(g, Tensor) else g
            if isinstance(data, np.ndarray) and data.dtype.kind in "fc" and np.isnan(data).any():
                raise RuntimeError(f"Function '{name}' returned nan values in its {i}th output.")
    return check


def _report(node, error):
    """The engine's call when a node's backward raised: warn with its forward stack."""
    stack = None if node is None else node.__dict__.get("forward_stack")
    if stack is not None and not getattr(error, "anomaly_reported", False):
        warnings.warn(f"Error detected in {node.name()}. Traceback of forward call that caused "
                      f"the error:\n{stack}", UserWarning, stacklevel=2)
        error.anomaly_reported = True


def _set(enabled, check_nan):
    _State.enabled, _State.check_nan = bool(enabled), bool(check_nan)
    observers = Extensions.observers
    if enabled and _RECORDER not in observers:
        observers.append(_RECORDER)
    elif not enabled and _RECORDER in observers:
        observers.remove(_RECORDER)
    Extensions.on_backward_error = _report if enabled else None
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
