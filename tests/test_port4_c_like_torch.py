"""Saved tensors as torch keeps them (issue 14's port): allow_mutation_on_saved_tensors
clones a saved tensor on its first in-place write and frees the clone with the graph; the
tensor an unpack hook gives back keeps its own version counter. The same program in torch and
in ckpt gives the same result or the same error."""
import numpy as np
import pytest
import torch

import ckpt


def both(program):
    return program(ckpt), program(torch)


def counts(ctx):
    return len(ctx.cloned), len(ctx.tid_to_weakhandle)


def test_mutation_clones_on_the_first_write_and_frees_with_the_graph():
    def program(lib):
        log = []
        with lib.autograd.graph.allow_mutation_on_saved_tensors() as ctx:
            a = lib.tensor([0.5, 1.0, 2.0], dtype=lib.float64, requires_grad=True)
            b = a.clone()
            out = (b ** 2).sum()
            log.append(counts(ctx))
            log.append(any(t is b for t in ctx.original.values()))  # saved as it is, no copy
            b.sin_()
            log.append(counts(ctx))
            log.append(any(t is b for t in ctx.original.values()))
            out.backward()
            log.append(counts(ctx))
            log.append(a.grad.tolist())
        return log
    ours, theirs = both(program)
    assert ours == theirs
    assert ours[0] == (0, 1) and ours[2][0] == 1 and ours[4][0] == 0


def test_mutation_clones_each_saved_version_once():
    def program(lib):
        log = []
        with lib.autograd.graph.allow_mutation_on_saved_tensors() as ctx:
            leaf = lib.tensor([0.5, 1.0], dtype=lib.float64, requires_grad=True)
            a = leaf.clone()
            b, b2 = a ** 2, a ** 3      # the same version saved twice: one clone
            a.sin_()
            log.append(len(ctx.cloned))
            c = a ** 2
            a.cos_()                    # clones the second version only
            log.append(len(ctx.cloned))
            grads = [lib.autograd.grad(t.sum(), leaf, retain_graph=True)[0].tolist() for t in (b, c)]
            del b, b2
            log.append(len(ctx.cloned))
            del c
            log.append(counts(ctx))
        return log, grads
    ours, theirs = both(program)
    assert ours[0] == theirs[0] and ours[0][:3] == [1, 2, 1] and ours[0][3][0] == 0
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-12)


def test_mutation_backward_sees_the_values_saved():
    def program(lib):
        with lib.autograd.graph.allow_mutation_on_saved_tensors():
            x = lib.tensor([0.5, 1.0, 2.0], dtype=lib.float64, requires_grad=True)
            y = x * 1
            first = (y ** 3).sum()
            y.mul_(2)
            second = (y ** 3).sum()
            y.add_(1)
            e = x.exp()                   # saves its output
            e.mul_(3)
            (first + second + e.sum()).backward()
            return x.grad.tolist()
    ours, theirs = both(program)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_mutation_through_a_view_and_into_an_out_argument():
    def program(lib):
        log = []
        with lib.autograd.graph.allow_mutation_on_saved_tensors() as ctx:
            a = lib.tensor([[0.5, 1.0], [2.0, 3.0]], dtype=lib.float64, requires_grad=True)
            b = a.clone()
            out = (b ** 2).sum()
            b[:1].mul_(10)                  # a view of the saved tensor
            b.view_as(b)[1, 1] = 7.0        # another write: already cloned
            log.append(len(ctx.cloned))
            out.backward()
            log += [len(ctx.cloned), a.grad.tolist()]
            w = lib.tensor([2.0], dtype=lib.float64, requires_grad=True)
            v = lib.tensor([3.0], dtype=lib.float64)
            prod = w * v
            lib.mul(lib.tensor([5.0], dtype=lib.float64), 2.0, out=v)
            log.append(counts(ctx))
            prod.backward()
            log += [counts(ctx), w.grad.tolist()]
        return log
    ours, theirs = both(program)
    assert ours == theirs
    assert ours[0] == 1 and ours[3] == (1, 1)


def test_mutation_double_backward_and_the_context_cleared_at_exit():
    def program(lib):
        with lib.autograd.graph.allow_mutation_on_saved_tensors() as ctx:
            a = lib.tensor([0.5, 1.0], dtype=lib.float64, requires_grad=True)
            b = a.clone()
            out = (b ** 3).sum()
            b.sin_()
            (da,) = lib.autograd.grad(out, a, create_graph=True)
            (d2a,) = lib.autograd.grad(da.sum(), a)
            inside = counts(ctx)
        return da.tolist(), d2a.tolist(), inside, counts(ctx), len(ctx.original)
    ours, theirs = both(program)
    assert ours == theirs
    assert ours[2][0] == 1 and ours[3] == (0, 0)


def test_mutation_saved_but_freed_before_the_write_is_not_cloned():
    def program(lib):
        log = []
        with lib.autograd.graph.allow_mutation_on_saved_tensors() as ctx:
            a = lib.tensor([0.5, 1.0], dtype=lib.float64, requires_grad=True).clone()
            (a ** 2).sum().backward()
            log.append(counts(ctx))
            a.sin_()
            log.append(counts(ctx))
        return log
    ours, theirs = both(program)
    assert ours == theirs and ours[1][0] == 0  # (sin_ saves a value of its own)


def test_mutation_write_not_made_by_an_op_raises_in_backward():
    """ckpt sees the writes of ops only: an optimizer's step into a saved tensor is not cloned,
    and backward says so rather than use the new value (torch clones there too)."""
    with ckpt.autograd.graph.allow_mutation_on_saved_tensors():
        w = ckpt.tensor([1.0, 2.0], requires_grad=True)
        loss = (w ** 2).sum()
        w.grad = ckpt.ones(2)
        ckpt.optim.SGD([w], lr=0.1).step()
        with pytest.raises(RuntimeError, match="modified by an inplace operation.*did not see"):
            loss.backward()


def test_unpacked_tensor_has_the_version_counter_of_what_unpack_gave():
    def program(lib):
        a = lib.tensor([1.0, 2.0], requires_grad=True)
        replacement = a.detach().clone()
        with lib.autograd.graph.saved_tensors_hooks(lambda t: replacement, lambda p: p):
            y = a * a
        saved = y.grad_fn._saved_self
        with lib.no_grad():
            saved.add_(1)
        return a._version, replacement._version, saved._version, replacement.tolist()
    ours, theirs = both(program)
    assert ours == theirs == (0, 1, 1, [2.0, 3.0])


def checkpoint_of(lib):
    return ckpt.checkpoint if lib is ckpt else torch.utils.checkpoint.checkpoint


def test_checkpoint_second_read_of_saved_tensors_in_one_backward_raises():
    def program(lib):
        seen = []

        class Twice(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x, x * 2)
                return x * 3

            @staticmethod
            def backward(ctx, grad):
                x, doubled = ctx.saved_tensors
                try:
                    ctx.saved_tensors
                except RuntimeError as error:
                    seen.append("unpacked once" in str(error))
                return grad * doubled

        x = lib.tensor([1.0, 2.0], dtype=lib.float64, requires_grad=True)
        out = checkpoint_of(lib)(lambda t: Twice.apply(t.sin()), x, use_reentrant=False)
        out.sum().backward(retain_graph=True)
        out.sum().backward()           # a new pass recomputes again
        return seen, x.grad.tolist()
    ours, theirs = both(program)
    assert ours[0] == theirs[0] == [True, True]
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-12)


def test_saved_tensors_read_twice_without_checkpoint_call_unpack_each_time():
    def program(lib):
        unpacked = []

        class Twice(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x * 3

            @staticmethod
            def backward(ctx, grad):
                first, = ctx.saved_tensors
                second, = ctx.saved_tensors
                return grad * (first + second)

        x = lib.tensor([1.0, 2.0], dtype=lib.float64, requires_grad=True)
        with lib.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: unpacked.append(1) or t):
            y = Twice.apply(x)
        y.sum().backward()
        return len(unpacked), x.grad.tolist()
    ours, theirs = both(program)
    assert ours == theirs == (2, [2.0, 4.0])


def test_a_saved_tensor_that_needs_no_grad_comes_back_itself():
    def program(lib):
        got = {}

        class Keep(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x, y):
                ctx.save_for_backward(y)
                return x * 1

            @staticmethod
            def backward(ctx, grad):
                got["y"], = ctx.saved_tensors
                return grad, None

        a = lib.tensor(1.0, requires_grad=True)
        b = lib.tensor(1.0)
        checkpoint_of(lib)(Keep.apply, a, b, use_reentrant=False).backward()
        through_checkpoint = got["y"] is b
        with lib.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
            y = a * b
            z = a * a
        return (through_checkpoint, y.grad_fn._saved_other is b, z.grad_fn._saved_self is a)
    ours, theirs = both(program)
    assert ours == theirs == (True, True, False)


def test_unpack_hook_returning_a_non_tensor():
    def program(lib):
        a = lib.ones(2, requires_grad=True)
        with lib.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: 1):
            y = a * a
        try:
            y.grad_fn._saved_self
        except TypeError as error:
            return str(error)
    ours, theirs = both(program)
    assert ours == theirs


def test_pow_saved_self_and_its_raw_hooks():
    def program(lib):
        a = lib.tensor([1.0, 2.0], dtype=lib.float64, requires_grad=True)
        y = a ** 3
        plain = y.grad_fn._saved_self is a
        y.grad_fn._raw_saved_self.register_hooks(lambda x: 2 * x, lambda x: x)
        doubled = y.grad_fn._saved_self.tolist()
        y.sum().backward()
        return plain, doubled, a.grad.tolist()
    ours, theirs = both(program)
    assert ours == theirs == (True, [2.0, 4.0], [12.0, 48.0])


def test_hooks_entered_during_backward_are_undone_at_its_end():
    def program(lib):
        packed = []
        later = lib.autograd.graph.saved_tensors_hooks(lambda t: packed.append("later") or t,
                                                        lambda t: t)

        def unpack(t):
            later.__enter__()
            return t

        x = lib.tensor([1.0, 2.0], requires_grad=True)
        with lib.autograd.graph.saved_tensors_hooks(lambda t: t, unpack):
            y = x.sin().sum()
        y.backward()
        (x * x).sum().backward()      # later's pack is not in effect here
        return packed
    ours, theirs = both(program)
    assert ours == theirs == []


def test_hooks_exited_during_backward_are_in_effect_again_after_it():
    def program(lib):
        log = []
        inner = lib.autograd.graph.saved_tensors_hooks(lambda t: log.append("inner") or t,
                                                       lambda t: inner.__exit__() or t)
        outer = lib.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t)
        for _ in range(3):
            with outer:
                inner.__enter__()
                x = lib.tensor([1.0, 2.0], requires_grad=True)
                x.sin().sum().backward()
        for _ in range(3):            # backward undid inner's exits: three pairs are left
            inner.__exit__()
        a = lib.tensor(1.0, requires_grad=True)
        y = a.exp()
        y.grad_fn._raw_saved_result.register_hooks(lambda t: t, lambda t: t)  # no hooks left
        try:
            inner.__exit__()
        except RuntimeError:
            log.append("one exit too many")
        return log
    ours, theirs = both(program)
    assert ours == theirs == ["inner"] * 3 + ["one exit too many"]


def test_saved_tensor_objects_come_from_nodes_only():
    def program(lib):
        y = lib.ones(2, requires_grad=True).exp()
        try:
            lib.autograd.SavedTensor()
        except RuntimeError as error:
            return str(error), isinstance(y.grad_fn._raw_saved_result, lib.autograd.SavedTensor)
    ours, theirs = both(program)
    assert ours == theirs == ("Trying to create a SavedTensor object from Python is forbidden.", True)


def test_mutation_saved_bytes_count_the_clone_once_made():
    """ckpt's memory view: the graph keeps the saved tensor's buffer, then just its clone."""
    with ckpt.autograd.graph.allow_mutation_on_saved_tensors():
        y = ckpt.ones(1000, requires_grad=True) * 1      # a 4000-byte buffer
        s = y[:10].sin()                                 # saves a 40-byte view of it
        before = ckpt.autograd.graph.saved_bytes(s)
        y.mul_(2)
        after = ckpt.autograd.graph.saved_bytes(s)
        s.sum().backward()
    assert (before, after) == (4000, 40)
