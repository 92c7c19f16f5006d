"""autograd's event protocol (ckpt.autograd.events): what fires, when, with which bytes."""
import gc

import numpy as np
import pytest

import ckpt
from ckpt.autograd import events


class Log(events.Observer):
    """Every event, as (kind, detail) in the order told."""

    def __init__(self):
        self.seen = []

    def op_recorded(self, e):
        self.seen.append(("op", e.node.name() if e.node is not None else None, e.recomputing))

    def tensor_saved(self, e):
        self.seen.append(("saved", id(e.value), e.value.data.nbytes,
                          None if e.tensor is None else id(e.tensor)))

    def saved_released(self, e):
        self.seen.append(("released", id(e.value), e.value.label))

    def gradients_produced(self, e):
        self.seen.append(("grads", tuple(a.nbytes for a in e.arrays)))


def kinds(log):
    return [s[0] for s in log.seen]


def test_each_event_fires_once_in_order_with_the_bytes():
    x = ckpt.ones(3, 5, requires_grad=True)              # 60 bytes of float32
    w = ckpt.ones(3, 5, dtype=ckpt.float64, requires_grad=True)   # 120 bytes
    log = Log()
    with events.observing(log, saved=True, gradients=True):
        y = (x * w).sum()
        y.backward()
    saved = [s for s in log.seen if s[0] == "saved"]
    assert [(s[2], s[3]) for s in saved] == [(60, id(x)), (120, id(w))]   # Mul saves x, then w
    assert kinds(log) == ["saved", "saved", "op", "op",
                          "grads", "grads", "grads", "released", "released", "grads"]
    assert log.seen[2][1:] == ("MulBackward0", False) and log.seen[3][1] == "SumBackward0"
    # the seed (a float64 scalar: the product is float64), Sum's gradient for the product
    # (3x5 float64), Mul's for x and w (both float64, while its saved values live), then,
    # after they are released, x's cast to x's float32 (a new array)
    assert [s[1] for s in log.seen if s[0] == "grads"] == [(8,), (120,), (120, 120), (60,)]
    released = [s for s in log.seen if s[0] == "released"]
    assert sorted(r[1] for r in released) == sorted(s[1] for s in saved)  # each value once
    assert {r[2] for r in released} == {"MulBackward0"}


def test_a_dropped_graph_releases_its_saved_values():
    x = ckpt.ones(4, requires_grad=True)
    log = Log()
    with events.observing(log, saved=True):
        y = x.exp()
        assert kinds(log) == ["saved", "op"]
        del y
        gc.collect()
    assert kinds(log) == ["saved", "op", "released"]


def test_without_saved_or_gradients_only_ops_are_told_and_hooks_stay_out():
    x = ckpt.ones(4, requires_grad=True)
    log = Log()
    with events.observing(log):
        y = x.exp()
        assert y.grad_fn.saved_entries()[0].unpack_hook is None   # no hook pair installed
        y.sum().backward()
    assert kinds(log) == ["op", "op"]


def test_a_raising_observer_leaves_the_graph_whole_and_the_protocol_off():
    class Boom(events.Observer):
        def op_recorded(self, e):
            if e.node is not None and e.node.name() == "TanhBackward0":
                raise ValueError("observer failed")

    x = ckpt.tensor([0.5, -1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match="observer failed"):
        with events.observing(Boom(), saved=True, gradients=True):
            y = x.exp() * x
            y.tanh()
    y.sum().backward()                     # the graph recorded before the failure works
    expected = (np.exp(x.data) * (1 + x.data))
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-6)
    assert not events.reporting_saves()
    log = Log()
    with events.observing(log):
        x.exp()
    assert kinds(log) == ["op"]            # Boom was removed: only the new observer is told


def test_a_raising_gradient_observer_stops_backward_and_restores_grad_mode():
    class Boom(events.Observer):
        def gradients_produced(self, e):
            raise ValueError("grads observer failed")

    x = ckpt.ones(3, requires_grad=True)
    y = (x * 3).sum()
    with pytest.raises(ValueError, match="grads observer failed"):
        with events.observing(Boom(), gradients=True):
            y.backward(retain_graph=True)
    assert ckpt.is_grad_enabled()
    y.backward()
    assert x.grad.tolist() == [3.0, 3.0, 3.0]


def test_nested_observers_are_all_told_outer_first_and_each_leaves_alone():
    order = []

    class Named(events.Observer):
        def __init__(self, name):
            self.name = name

        def op_recorded(self, e):
            order.append(self.name)

    x = ckpt.ones(2, requires_grad=True)
    with events.observing(Named("outer")):
        x * 2
        with events.observing(Named("inner")):
            x * 2
        x * 2
    x * 2
    assert order == ["outer", "outer", "inner", "outer"]


def test_saved_values_are_released_only_to_those_told_of_them():
    x = ckpt.ones(4, requires_grad=True)
    early, late = Log(), Log()
    with events.observing(early, saved=True):
        y = x.exp()
        with events.observing(late, saved=True):
            z = x.sin()
            del y
            gc.collect()
        del z
        gc.collect()
    assert kinds(early) == ["saved", "op", "saved", "op", "released", "released"]
    assert kinds(late) == ["saved", "op"]     # exp's value was saved before it observed;
    # sin's was released after it left


def test_the_innermost_saved_tensor_hooks_win():
    x = ckpt.ones(4, requires_grad=True)
    log = Log()
    with events.observing(log, saved=True):
        with ckpt.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
            x.exp()
    assert kinds(log) == ["op"]


def test_recomputing_nests_restores_on_error_and_marks_ops():
    log = Log()
    x = ckpt.ones(2, requires_grad=True)
    with events.observing(log):
        with events.recomputing():
            x * 2
            with events.recomputing(False):
                x * 2
                assert not events.is_recomputing()
            assert events.is_recomputing()
        with pytest.raises(KeyError):
            with events.recomputing():
                raise KeyError("inside")
        assert not events.is_recomputing()
        x * 2
    assert [s[2] for s in log.seen] == [True, False, False]


def test_bad_observers_and_reuse_are_refused():
    with pytest.raises(TypeError, match="has no op_recorded, tensor_saved"):
        events.observing(object())
    with pytest.raises(TypeError, match="expects a bool"):
        events.recomputing("yes")
    block = events.observing(events.Observer())
    with block:
        with pytest.raises(RuntimeError, match="already in effect"):
            block.__enter__()
