"""The op vocabulary of a plan, and the schedule trees every strategy builds.

Four ops, each naming one stage i (1-based):

==================  =====================================================================
``forward i``       F_i without saving: needs x_{i-1}; creates x_i (ω_x^i bytes)
``forward_save i``  F_i saving for backward: needs x_{i-1}; creates x̄_i (ω_x̄^i bytes, which
                    include x_i, so x_i is available to F_{i+1} and B_{i+1})
``backward i``      B_i: needs x̄_i, x_{i-1} and δ_i (none for i = L); frees x̄_i and δ_i,
                    creates δ_{i-1} (none for i = 1)
``drop i``          frees the checkpoint x_i made by ``forward i`` (x_0 cannot be dropped)
==================  =====================================================================

A *schedule tree* describes one schedule of the class the dynamic programs search (a segment
[s, t] is processed with x_{s-1} and δ_t alive; every checkpoint stays until its segment is
done — Beaumont et al.'s persistent schedules):

- ``("leaf", s)``: forward_save s, backward s                       (segment [s, s])
- ``("save", s, child)``: forward_save s, child ([s+1, t]), backward s
- ``("split", s, s2, right, left)``: forward s .. s2-1 keeping only x_{s2-1} (each
  intermediate dropped after use), right ([s2, t]), drop s2-1, left ([s, s2-1])

>>> ops_from_tree(("split", 1, 2, ("leaf", 2), ("leaf", 1)))
[forward 1, forward_save 2, backward 2, drop 1, forward_save 1, backward 1]
"""
from typing import NamedTuple

__all__ = ["Op", "OP_KINDS", "ops_from_tree", "store_all_tree", "segments_tree"]

OP_KINDS = ("forward", "forward_save", "backward", "drop")


class Op(NamedTuple):
    """One op of a plan: ``kind`` in ``OP_KINDS`` and the 1-based ``stage``.

    >>> Op("forward_save", 3), Op.parse("drop 2")
    (forward_save 3, drop 2)
    """
    kind: str
    stage: int

    def __repr__(self):
        return f"{self.kind} {self.stage}"

    __str__ = __repr__

    def describe(self):
        """A sentence for ``Plan.explain``.

        >>> Op("backward", 2).describe()
        'backward of stage 2: consume x̄2 and δ2, produce δ1'
        """
        i = self.stage
        return {"forward": f"forward stage {i} without saving: x{i - 1} -> x{i} (kept)",
                "forward_save": f"forward stage {i} saving for backward: x{i - 1} -> x̄{i}",
                "backward": f"backward of stage {i}: consume x̄{i} and δ{i}, produce δ{i - 1}",
                "drop": f"drop checkpoint x{i}"}[self.kind]

    @classmethod
    def parse(cls, text):
        """The op written as ``"<kind> <stage>"`` (its ``str``).

        >>> Op.parse("forward 4")
        forward 4
        """
        parts = str(text).split()
        if len(parts) != 2 or parts[0] not in OP_KINDS or not parts[1].lstrip("-").isdigit():
            raise ValueError(f"cannot read op {text!r}: expected '<kind> <stage>' with kind "
                             f"in {OP_KINDS}")
        return cls(parts[0], int(parts[1]))


def ops_from_tree(tree):
    """The op list of a schedule tree (iterative: trees may be thousands deep).

    >>> ops_from_tree(("save", 1, ("leaf", 2)))
    [forward_save 1, forward_save 2, backward 2, backward 1]
    """
    out, stack = [], [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, Op):
            out.append(item)
            continue
        kind = item[0]
        if kind == "leaf":
            s = item[1]
            out.append(Op("forward_save", s))
            out.append(Op("backward", s))
        elif kind == "save":
            _, s, child = item
            out.append(Op("forward_save", s))
            stack.append(Op("backward", s))
            stack.append(child)
        elif kind == "split":
            _, s, s2, right, left = item
            for j in range(s, s2):
                out.append(Op("forward", j))
                if j > s:
                    out.append(Op("drop", j - 1))
            stack.append(left)
            stack.append(Op("drop", s2 - 1))
            stack.append(right)
        else:
            raise ValueError(f"unknown schedule tree node {kind!r}")
    return out


def store_all_tree(s, t):
    """Segment [s, t] stored entirely: forward_save s..t, then backward t..s.

    >>> store_all_tree(1, 3)
    ('save', 1, ('save', 2, ('leaf', 3)))
    """
    tree = ("leaf", t)
    for i in range(t - 1, s - 1, -1):
        tree = ("save", i, tree)
    return tree


def segments_tree(bounds, L, inner=store_all_tree):
    """Checkpoints at the segment starts ``bounds`` (1 = b_0 < b_1 < ... <= L): the first
    forward keeps x_{b_k - 1} for every k; each segment [b_k, b_{k+1} - 1] is then processed by
    ``inner`` (store-all by default), the last one without recomputation (Chen et al.'s
    √L / greedy schedules).

    >>> segments_tree([1, 3], 4)
    ('split', 1, 3, ('save', 3, ('leaf', 4)), ('save', 1, ('leaf', 2)))
    """
    bounds = sorted(set(int(b) for b in bounds))
    if not bounds or bounds[0] != 1 or bounds[-1] > L:
        raise ValueError(f"segment starts must begin with 1 and lie in 1..{L}, got {bounds}")
    tree = inner(bounds[-1], L)
    for k in range(len(bounds) - 2, -1, -1):
        tree = ("split", bounds[k], bounds[k + 1], tree, inner(bounds[k], bounds[k + 1] - 1))
    return tree
