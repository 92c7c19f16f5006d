"""detect_anomaly / set_detect_anomaly: the same program in torch and ckpt warns, raises and
reports the same, with the forward stack of the op whose backward failed."""
import warnings

import pytest
import torch

import ckpt


def anomaly_outcome(lib, program, **kwargs):
    """(error type, its first line, the warnings' first lines, whether a warning shows the
    forward line that made the failing op) of ``program(lib)`` under ``detect_anomaly``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with lib.autograd.detect_anomaly(**kwargs):
                program(lib)
            error = None
        except RuntimeError as e:
            error = e
    messages = [str(w.message) for w in caught if w.category is UserWarning]
    return (type(error).__name__, str(error).split(" Hint:")[0].split("\n")[0].replace("torch.", "ckpt."),
            [m.strip().split("\n")[0].split(" (Triggered internally")[0] for m in messages],
            any("the_forward_line_here" in m for m in messages))


def modified_after_saving(lib):
    x = lib.ones(3, requires_grad=True)
    y = x * 1
    w = y.sin()  # the_forward_line_here
    y.mul_(2)
    w.sum().backward()


def nan_gradient(lib):
    x = lib.tensor([-1.0, 4.0], requires_grad=True)
    y = x.sqrt()  # the_forward_line_here
    y.sum().backward()


def nan_in_a_double_backward(lib):
    """The node that fails was recorded by another node's backward: both stacks are shown."""
    class Twice(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, grad):
            return grad * 2

    class Outer(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.sum()

        @staticmethod
        def backward(ctx, grad):
            return Twice.apply(grad.expand(3) / 0)

    x = lib.ones(3, requires_grad=True)
    (g,) = lib.autograd.grad(Outer.apply(x), x, create_graph=True)  # the_forward_line_here
    g.sum().backward()


@pytest.mark.parametrize("program", [modified_after_saving, nan_gradient, nan_in_a_double_backward])
def test_a_failing_backward_is_reported_as_torch(program):
    ours, theirs = anomaly_outcome(ckpt, program), anomaly_outcome(torch, program)
    assert ours[0] == theirs[0] and ours[2] == theirs[2] and ours[3] == theirs[3]
    assert ours[1].split("[")[0] == theirs[1].split("[")[0]


def test_without_the_nan_check_nan_passes_as_torch():
    def program(lib):
        x = lib.tensor([-1.0, 4.0], requires_grad=True)
        with warnings.catch_warnings(record=True):
            with lib.autograd.detect_anomaly(check_nan=False):
                x.sqrt().sum().backward()
        return [v != v for v in x.grad.tolist()]
    assert program(ckpt) == program(torch) == [True, False]


def test_set_detect_anomaly_and_its_queries_as_torch():
    def program(lib):
        ag = lib.autograd
        log = [lib.is_anomaly_enabled()]
        with ag.set_detect_anomaly(True, check_nan=False):
            log += [lib.is_anomaly_enabled(), lib.is_anomaly_check_nan_enabled()]
        log += [lib.is_anomaly_enabled(), lib.is_anomaly_check_nan_enabled()]
        ag.set_detect_anomaly(True)
        log.append(lib.is_anomaly_enabled())
        ag.set_detect_anomaly(False)
        log.append(lib.is_anomaly_enabled())
        with warnings.catch_warnings(record=True), ag.detect_anomaly():
            log.append(lib.is_anomaly_enabled())
        return log
    assert program(ckpt) == program(torch) == [False, True, False, False, True, True, False, True]


def test_a_graph_made_before_anomaly_mode_is_checked_without_its_stack_as_torch():
    def program(lib):
        x = lib.tensor([-1.0, 4.0], requires_grad=True)
        y = x.sqrt().sum()
        return anomaly_outcome(lib, lambda lib: y.backward())
    assert program(ckpt) == program(torch)
    assert "No forward pass information available" in program(ckpt)[2][1]


def test_a_report_turned_into_an_error_goes_to_stderr_and_the_error_wins_as_torch(capfd):
    def program(lib):
        with warnings.catch_warnings(record=True), lib.autograd.detect_anomaly():
            warnings.simplefilter("error")
            try:
                modified_after_saving(lib)
            except RuntimeError as error:
                return type(error).__name__, "Error detected in SinBackward0" in capfd.readouterr().err
    assert program(ckpt) == program(torch) == ("RuntimeError", True)


def test_dividing_by_the_number_zero_does_not_warn_as_torch():
    def program(lib):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            x = lib.tensor([0.0, 1.0, -1.0])
            x[1:] /= 0
            values = (x / 0).tolist() + x.tolist()
        return [str(v) for v in values], len(caught)
    assert program(ckpt) == program(torch)
