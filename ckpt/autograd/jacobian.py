"""The Jacobian kernels both Jacobian APIs use (``ckpt.autograd.functional.jacobian``, torch's
``autograd.functional`` names, and ``ckpt.func.jacrev``/``jacfwd``, torch.func's): rows by
batched backward passes, columns by one forward pass carrying a batch of basis tangents.

Reverse mode takes one row of J per basis cotangent e_k (k over the output's elements):
e_k^T J is one backward pass, and ``autograd.grad(..., is_grads_batched=True)`` runs a batch
of them at once. Forward mode takes one column per basis tangent: J e_k is one forward pass,
and ``forward_ad.dual_level(batch_size=B)`` carries B of them through one pass.

>>> import ckpt
>>> from ckpt.autograd import forward_ad as fwAD
>>> x = ckpt.tensor([1.0, 2.0], requires_grad=True)
>>> reverse_blocks(x ** 2, [x])[0].tolist()
[[2.0, 0.0], [0.0, 4.0]]
>>> (tangents,), sizes = basis([x])
>>> with fwAD.dual_level(batch_size=sum(sizes)):
...     y = fwAD.make_dual(x.detach(), tangents) ** 2
...     primal, tangent = fwAD.unpack_dual(y)
>>> forward_blocks(primal, tangent, [x])[0].tolist()
[[2.0, 0.0], [0.0, 4.0]]
"""
import numpy as np

from . import forward_ad as fwAD
from .batch import Batch
from .engine import grad as _engine_grad
from .tensor import _wrap

__all__ = ["reverse_blocks", "basis", "forward_block", "forward_blocks"]


def reverse_blocks(out, inputs, chunk_size=None, create_graph=False):
    """The Jacobian of the tensor ``out`` with respect to each of ``inputs``, by reverse mode:
    per input a block of shape ``out.shape + input.shape``, or None where ``out``'s graph does
    not reach that input (or ``out`` requires no grad). The rows go through batched backward
    passes of ``chunk_size`` rows (all at once when None; 1 is a loop of plain backward
    passes, which is also what runs inside a batched forward level: tangent batches and
    gradient batches don't stack). ``create_graph`` keeps the blocks differentiable.

    >>> import ckpt
    >>> x, y = ckpt.tensor([1.0, 3.0], requires_grad=True), ckpt.ones(2, requires_grad=True)
    >>> blocks = reverse_blocks(x * 2, [x, y], chunk_size=1)
    >>> blocks[0].tolist(), blocks[1]
    ([[2.0, 0.0], [0.0, 2.0]], None)
    """
    n = out.numel()
    shapes = [tuple(out.shape) + tuple(t.shape) for t in inputs]
    if not out.requires_grad:
        return [None] * len(inputs)
    if n == 0:
        return [_wrap(np.zeros(s, t.dtype)) for s, t in zip(shapes, inputs)]
    if Batch.level_size is not None:
        chunk_size = 1
    eye = np.eye(n, dtype=out.dtype)
    pieces = [[] for _ in inputs]
    for start, stop in _chunks(n, chunk_size):
        batched = stop - start > 1 or chunk_size != 1
        cot = eye[start:stop].reshape((stop - start,) + tuple(out.shape))
        grads = _engine_grad(out, inputs, _wrap(cot if batched else cot[0]), retain_graph=True,
                             create_graph=create_graph, allow_unused=True,
                             is_grads_batched=batched)
        for j, g in enumerate(grads):
            if g is None or pieces[j] is None:
                pieces[j] = None
            else:
                pieces[j].append(g)
    join = _stack if chunk_size == 1 else _cat     # rows one by one, or batches of rows
    return [None if p is None else join(p).reshape(s) for p, s in zip(pieces, shapes)]


def _chunks(n, chunk_size):
    if chunk_size is None:
        return [(0, n)] if n else []
    return [(s, min(s + chunk_size, n)) for s in range(0, n, chunk_size)]


def _cat(pieces):
    from .ops.shape import cat
    return pieces[0] if len(pieces) == 1 else cat(pieces)


def _stack(pieces):
    from .ops.shape import stack
    return stack(pieces)


def basis(refs):
    """The standard basis over the concatenated elements of ``refs``, split per ref: for
    ``refs`` of sizes n_1..n_k (total B), ref i gets a ``(B, *ref_i.shape)`` block that is the
    identity on its own rows and zero elsewhere. Returns the blocks and the sizes.

    >>> import ckpt
    >>> blocks, sizes = basis([ckpt.ones(2), ckpt.ones(1)])
    >>> blocks[0].tolist(), blocks[1].tolist(), sizes
    ([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], [[0.0], [0.0], [1.0]], [2, 1])
    """
    sizes = [r.numel() for r in refs]
    B = sum(sizes)
    blocks, start = [], 0
    for r, n in zip(refs, sizes):
        block = np.zeros((B, n), dtype=r.dtype)
        block[np.arange(start, start + n), np.arange(n)] = 1
        blocks.append(_wrap(block.reshape((B,) + tuple(r.shape))))
        start += n
    return blocks, sizes


def forward_block(columns, out, inp):
    """``(inp.numel(), *out.shape)`` columns (output tangents, one per element of ``inp``) as
    the Jacobian block of shape ``out.shape + inp.shape``.

    >>> import ckpt
    >>> forward_block(ckpt.tensor([[1.0, 2.0, 3.0]]), ckpt.ones(3), ckpt.ones(1)).shape
    (3, 1)
    """
    columns = columns.reshape(inp.numel(), -1)
    return columns.transpose(0, 1).reshape(tuple(out.shape) + tuple(inp.shape))


def forward_blocks(primal, tangent, inputs):
    """One output's Jacobian blocks (``primal.shape + input.shape``, one per input) from its
    tangent of a forward pass that carried ``basis(inputs)`` as a batch.

    >>> import ckpt
    >>> out = ckpt.ones(2)
    >>> [b.shape for b in forward_blocks(out, ckpt.zeros(3, 2), [ckpt.ones(1), ckpt.ones(2)])]
    [(2, 1), (2, 2)]
    """
    row, start = [], 0
    for inp in inputs:
        n = inp.numel()
        row.append(forward_block(tangent[start:start + n], primal, inp))
        start += n
    return row
