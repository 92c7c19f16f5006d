"""The in-place initialisers (``uniform_``, ``normal_``, ``bernoulli_``, ...): each fills a
tensor with draws from ckpt's generator (or ``generator=``). As in torch, the new values
carry no gradient (the node before them gets zeros) and a leaf that requires grad refuses
them unless grad mode is off (``with ckpt.no_grad(): w.uniform_()``)."""
import numpy as np

from ..node import record
from ..random import default_generator
from .inplace import NoGradientThrough, write_result
from .shape import check_inplace


def _mantissa_top(dtype):
    """``random_()``'s default upper end: 2 ** mantissa bits + 1 (floats), the dtype's max + 1."""
    if dtype.kind == "f":
        return 2 ** (np.finfo(dtype).nmant + 1) + 1
    return int(np.iinfo(dtype).max) + 1 if dtype.kind in "iu" else 2


_DRAWS = {  # name: (numpy draw(generator, shape, *params), default params, torch's keywords)
    "uniform_": (lambda g, shape, low, high: g.uniform(low, high, shape), (0.0, 1.0), ("from", "to")),
    "normal_": (lambda g, shape, mean, std: g.normal(mean, std, shape), (0.0, 1.0), ("mean", "std")),
    "bernoulli_": (lambda g, shape, p: g.random(shape) < p, (0.5,), ("p",)),
    "exponential_": (lambda g, shape, rate: g.exponential(1.0 / rate, shape), (1.0,), ("lambd",)),
    "geometric_": (lambda g, shape, p: g.geometric(p, shape), (None,), ("p",)),
    "log_normal_": (lambda g, shape, mean, std: g.lognormal(mean, std, shape), (1.0, 2.0),
                    ("mean", "std")),
    "cauchy_": (lambda g, shape, median, sigma: median + sigma * g.standard_cauchy(shape),
                (0.0, 1.0), ("median", "sigma")),
    "random_": (lambda g, shape, low, high: g.integers(low, high, shape), (0, None), ("from", "to")),
}


def _fill_with_draws(name):
    draw, defaults, keywords = _DRAWS[name]
    node_cls = type("".join(p.capitalize() for p in name.strip("_").split("_")) + "Backward0",
                    (NoGradientThrough,), {"__module__": __name__})

    def method(self, *args, generator=None, **kwargs):
        params = list(args) + list(defaults[len(args):])
        for i, key in enumerate(keywords):
            if key in kwargs:
                params[i] = kwargs.pop(key)
        if kwargs:
            raise TypeError(f"{name}() got an unexpected keyword argument {next(iter(kwargs))!r}")
        if name == "random_":
            params = [0, params[0]] if len(args) == 1 else params
            params[1] = _mantissa_top(self.data.dtype) if params[1] is None else params[1]
        if None in params:
            raise TypeError(f"{name}() missing required argument {keywords[params.index(None)]!r}")
        check_inplace(self)
        values = draw((generator or default_generator).numpy, self.data.shape, *params)
        out = record(node_cls, np.asarray(values).astype(self.data.dtype), (self,))
        return write_result(self, out, name, casting="unsafe")
    method.__name__ = name
    method.__doc__ = (f"Fill in place with draws from ckpt's generator "
                      f"({', '.join(keywords)}: defaults {defaults}).\n\n"
                      f"    >>> import ckpt\n    >>> ckpt.empty(3).{name}({'0.5' if name == 'geometric_' else ''})"
                      f".shape\n    (3,)\n")
    return method


uniform_, normal_, bernoulli_, exponential_ = (
    _fill_with_draws(n) for n in ("uniform_", "normal_", "bernoulli_", "exponential_"))
geometric_, log_normal_, cauchy_, random_ = (
    _fill_with_draws(n) for n in ("geometric_", "log_normal_", "cauchy_", "random_"))


class BernoulliBackward0(NoGradientThrough):
    pass


def bernoulli(input, p=None, *, generator=None):
    """Ones with probability ``p`` (default: each element of ``input``), else zeros, in
    ``input``'s dtype; no gradient flows through the draw, as in torch.

    >>> import ckpt
    >>> ckpt.ones(3).bernoulli().tolist(), ckpt.zeros(2).bernoulli(0.0).tolist()
    ([1.0, 1.0, 1.0], [0.0, 0.0])
    """
    probs = input.data if p is None else (p.data if hasattr(p, "data") else p)
    values = (generator or default_generator).numpy.random(input.data.shape) < probs
    return record(BernoulliBackward0, values.astype(input.data.dtype), (input,))
