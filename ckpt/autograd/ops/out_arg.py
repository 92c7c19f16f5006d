"""``out=`` for the elementwise functions (``ckpt.mul(a, b, out=x)``), checked as torch checks
it: no argument may require grad in grad mode, none may carry a forward-mode tangent, and
``out`` must be writable in place."""
import numpy as np

from .. import grad_mode
from ..tensor import Tensor
from .shape import bump_version, check_inplace, writable


def into_out(name, op, args, out):
    """``op(*args)`` written into ``out`` (resized if its shape differs, as torch does, which
    also warns); its version goes up.

    >>> import ckpt
    >>> x = ckpt.zeros(2)
    >>> ckpt.mul(ckpt.ones(2), 3.0, out=x) is x, x.tolist()
    (True, [3.0, 3.0])
    """
    if not isinstance(out, Tensor):
        raise TypeError(f"{name}(): argument 'out' must be Tensor, not {type(out).__name__}")
    tensors = [a for a in args if isinstance(a, Tensor)] + [out]
    if grad_mode.is_grad_enabled() and any(t.requires_grad for t in tensors):
        raise RuntimeError(f"{name}(): functions with out=... arguments don't support automatic "
                           f"differentiation, but one of the arguments requires grad.")
    if any(t._fw is not None for t in tensors):
        raise RuntimeError(f"Trying to use forward AD with {name}_out that does not support it "
                           f"because it is an out= function")
    check_inplace(out)
    with grad_mode.no_grad():
        result = op(*args).data
    if result.shape == out.data.shape:
        np.copyto(writable(out.data), result, casting="same_kind")
    else:
        out.data = result.astype(out.data.dtype)
    bump_version(out)
    return out
