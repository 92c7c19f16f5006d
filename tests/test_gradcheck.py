"""gradcheck/gradgradcheck keywords against torch's: the same check of the same function in
torch and in ckpt passes, fails with the same error, or warns the same way."""
import re
import warnings

import numpy as np
import pytest
import torch

import ckpt

VALUES = (0.3, -1.2, 2.0)


def leaf(lib, dtype="float64"):
    return lib.tensor(list(VALUES), dtype=getattr(lib, dtype), requires_grad=True)


def functions(lib):
    """Custom Functions of ``2 x`` with a right or a wrong derivative in each mode."""
    class NoJvp(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g * 2

    class Right(NoJvp):
        @staticmethod
        def jvp(ctx, t):
            return t * 2

    class WrongBackward(Right):
        @staticmethod
        def backward(ctx, g):
            return g * 3

    class WrongJvp(Right):
        @staticmethod
        def jvp(ctx, t):
            return t * 3

    class Noisy(Right):
        """Right up to 1e-8, but a different gradient at every run."""
        @staticmethod
        def backward(ctx, g):
            return g * 2 + lib.randn(g.shape, dtype=g.dtype) * 1e-8

    class NoisyScaled(Right):
        """Right up to 1e-8 and zero for a zero gradient, different at every run."""
        @staticmethod
        def backward(ctx, g):
            return g * (2 + lib.randn(g.shape, dtype=g.dtype) * 1e-8)

    class NotMultiplied(Right):
        """Right Jacobian, but a constant added: nonzero for a zero grad_output."""
        @staticmethod
        def backward(ctx, g):
            return g * 2 + 1e-3

    return {c.__name__: c.apply for c in (Right, WrongBackward, WrongJvp, Noisy, NoisyScaled,
                                          NotMultiplied, NoJvp)}


def check(lib, name, dtype="float64", gradgrad=False, **keywords):
    """(result or error type, first line of the message, warning categories)."""
    f = functions(lib)[name] if name in functions(lib) else getattr(lib, name)
    checker = lib.autograd.gradgradcheck if gradgrad else lib.autograd.gradcheck
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = checker(f, (leaf(lib, dtype),), **keywords)
        except Exception as e:  # noqa: BLE001 -- the error is the outcome compared
            result = (type(e).__name__, str(e).splitlines()[0] if str(e) else "")
    return result, sorted({w.category.__name__ for w in caught if w.category is UserWarning})


CASES = {
    "right": ("Right", {}),
    "right-all-keywords": ("Right", dict(check_forward_ad=True, check_batched_grad=True,
                                         check_grad_dtypes=True, nondet_tol=1e-7)),
    "right-fast": ("Right", dict(fast_mode=True, check_forward_ad=True)),
    "wrong-backward": ("WrongBackward", {}),
    "wrong-backward-fast": ("WrongBackward", dict(fast_mode=True)),
    "wrong-backward-no-raise": ("WrongBackward", dict(raise_exception=False)),
    "wrong-backward-forward-only": ("WrongBackward", dict(check_forward_ad=True,
                                                          check_backward_ad=False)),
    "wrong-jvp": ("WrongJvp", dict(check_forward_ad=True)),
    "wrong-jvp-fast": ("WrongJvp", dict(check_forward_ad=True, fast_mode=True)),
    "wrong-jvp-unchecked": ("WrongJvp", {}),
    "no-jvp": ("NoJvp", dict(check_forward_ad=True)),
    "nondeterministic": ("NoisyScaled", {}),
    "nondeterministic-fast": ("NoisyScaled", dict(fast_mode=True)),
    "nondeterministic-within-tolerance": ("NoisyScaled", dict(nondet_tol=1e-6)),
    "nondeterministic-not-multiplied": ("Noisy", dict(nondet_tol=1e-6)),
    "not-multiplied": ("NotMultiplied", {}),
    "neither-mode": ("Right", dict(check_backward_ad=False)),
    "float32": ("sin", dict(dtype="float32", eps=1e-3, atol=1e-2, rtol=1e-2)),
    "float32-default-tolerances": ("sin", dict(dtype="float32")),
    "builtin-op-batched": ("tanh", dict(check_batched_grad=True, check_forward_ad=True,
                                        check_batched_forward_grad=True, masked=None)),
    "batched-forward-without-forward": ("tanh", dict(check_batched_forward_grad=True)),
    "function-batched-forward": ("Right", dict(check_forward_ad=True,
                                               check_batched_forward_grad=True)),
    "gradgrad-keywords": ("sin", dict(gradgrad=True, fast_mode=True, nondet_tol=1e-7,
                                      check_batched_grad=True, check_fwd_over_rev=True,
                                      gen_non_contig_grad_outputs=True)),
    "gradgrad-wrong-backward": ("WrongBackward", dict(gradgrad=True)),
}


@pytest.mark.parametrize("case", CASES)
def test_gradcheck_outcome_matches_torch(case):
    name, keywords = CASES[case]
    torch.manual_seed(0)
    expected = check(torch, name, **keywords)
    ckpt.manual_seed(0)
    assert same_outcome(check(ckpt, name, **keywords), expected)


def same_outcome(ours, theirs):
    """Equal results and warnings; for an error, the same type and every word of the first
    sentence of torch's message in ckpt's."""
    (result, warned), (expected, expected_warned) = ours, theirs
    if not isinstance(expected, tuple):
        return result is expected and warned == expected_warned

    def words(text):
        return set(re.findall(r"\w+", text.lower()))
    first_sentence = re.split(r"\.(?:\s|$)", expected[1])[0]
    return (isinstance(result, tuple) and result[0] == expected[0]
            and words(first_sentence) <= words(result[1]) and warned == expected_warned)


def test_outcomes_the_comparison_rests_on():
    """What torch answered above, stated for ckpt: the comparison is not vacuous."""
    def outcome(case):
        name, keywords = CASES[case]
        return check(ckpt, name, **keywords)[0]

    assert outcome("right-all-keywords") is True and outcome("wrong-backward-no-raise") is False
    assert outcome("wrong-backward")[1].startswith("Jacobian mismatch for output 0")
    assert outcome("wrong-jvp")[1].startswith("Jacobian computed with forward mode mismatch")
    assert outcome("nondeterministic")[1].startswith("Backward is not reentrant")
    assert outcome("nondeterministic-not-multiplied")[1] == "backward not multiplied by grad_output"
    assert outcome("neither-mode")[0] == "AssertionError"
    assert check(ckpt, "sin", **CASES["float32"][1]) == (True, ["UserWarning"])


def pair_ignoring_undefined(lib):
    """Two outputs, ``set_materialize_grads(False)``: backpropagating from one output leaves
    the other's gradient undefined (None), and this backward then adds 1."""
    class Pair(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.set_materialize_grads(False)
            return x * 2, x * 3

        @staticmethod
        def backward(ctx, g1, g2):
            return (g1 * 2 if g1 is not None else 1.0) + (g2 * 3 if g2 is not None else 1.0)

    return Pair.apply


@pytest.mark.parametrize("check_undefined_grad", [True, False])
def test_undefined_output_gradients_must_give_zero_input_gradients(check_undefined_grad):
    def outcome(lib):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = lib.autograd.gradcheck(pair_ignoring_undefined(lib), (leaf(lib),), atol=10,
                                                check_undefined_grad=check_undefined_grad)
            except Exception as e:  # noqa: BLE001 -- the error is the outcome compared
                result = type(e).__name__, str(e).splitlines()[0]
        return result, [w.category.__name__ for w in caught if w.category is UserWarning]

    assert same_outcome(outcome(ckpt), outcome(torch))
    if check_undefined_grad:
        assert outcome(ckpt)[0][1].startswith("Expected backward function to handle undefined")


def test_fast_mode_catches_a_wrong_rule_on_a_larger_input():
    class WrongSum(ckpt.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return (x * x).sum()

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * ckpt.ones_like(x) * 2  # drops the factor x

    x = ckpt.tensor(np.linspace(-1, 1, 12).reshape(3, 4), dtype=ckpt.float64, requires_grad=True)
    assert ckpt.autograd.gradcheck(lambda t: (t * t).sum(), (x,), fast_mode=True)
    assert ckpt.autograd.gradcheck(WrongSum.apply, (x,), fast_mode=True,
                                   raise_exception=False) is False


def test_batched_checks_catch_a_rule_that_mixes_the_batch(monkeypatch):
    """A sum whose forward rule also sums over the batch of tangents, and whose backward rule
    also sums over the batch of gradients: right one at a time, wrong batched."""
    from ckpt.autograd.ops import reduce

    x = ckpt.tensor([[0.5, -1.0], [2.0, 0.3]], dtype=ckpt.float64, requires_grad=True)
    assert ckpt.autograd.gradcheck(lambda t: t.sum(1), (x,), check_forward_ad=True,
                                   check_batched_forward_grad=True, check_batched_grad=True)
    plain_jvp, plain_vjp = reduce.SumBackward1.jvp, reduce.SumBackward1.vjp
    monkeypatch.setattr(reduce.SumBackward1, "jvp",
                        lambda self, tangents, primals, out: plain_jvp(self, tangents, primals, out)
                        + (tangents[0].sum() * 0 if tangents[0].ndim == 2 else tangents[0].sum()))
    with pytest.raises(RuntimeError, match="batched forward gradient 0 mismatch"):
        ckpt.autograd.gradcheck(lambda t: t.sum(1), (x,), check_forward_ad=True,
                                check_batched_forward_grad=True)
    monkeypatch.setattr(reduce.SumBackward1, "jvp", plain_jvp)
    monkeypatch.setattr(reduce.SumBackward1, "vjp",
                        lambda self, g: plain_vjp(self, g) + (0 if g.ndim == 1 else g.sum()))
    with pytest.raises(RuntimeError, match="batched gradient 0 mismatch"):
        ckpt.autograd.gradcheck(lambda t: t.sum(1), (x,), check_batched_grad=True)
