"""Binomial checkpointing: Griewank and Walther (2000), "Algorithm 799: revolve", ACM TOMS
26(1); Griewank (1992).

``revolve(steps, snapshots)`` returns the classic action list over states 0..steps (state i
is x_i; reversing step i needs state i-1): ``takeshot`` (store the current state in a slot),
``advance`` (run forward steps without taping), ``restore`` (make a stored state current),
``firsturn`` / ``youturn`` (run step i taping it, then reverse it). The slot holding state 0 is
one of the ``snapshots`` slots.

With β(c, r) = C(c + r, c) and r the *repetition number*, the least integer with
β(snapshots, r) >= steps, the number of advanced steps is the optimum of eq. (2) of the
paper: t(steps, snapshots) = r · steps - β(snapshots + 1, r - 1). The recursion below
achieves it: a segment of n steps with c slots advances m = min(β(c, r-1), n - β(c-1, r-1))
steps, stores that state, reverses the remaining n - m steps with c - 1 slots, restores and
reverses the first m with c slots; one slot (c = 1) means advancing from the stored state
before every turn.

>>> sched = revolve(4, 2)
>>> [str(a) for a in sched]
['takeshot 0 @0', 'advance 0->2', 'takeshot 2 @1', 'advance 2->3', 'firsturn 4', 'restore 2 @1', 'youturn 3', 'restore 0 @0', 'advance 0->1', 'takeshot 1 @1', 'youturn 2', 'restore 0 @0', 'youturn 1']
>>> sched.advances, optimal_advances(4, 2)
(4, 4)
"""
from math import comb
from typing import NamedTuple

from ..schedule import Op
from ._search import best_within

__all__ = ["revolve", "Action", "RevolveSchedule", "optimal_advances", "revolve_plan_ops",
           "revolve_strategy"]


class Action(NamedTuple):
    """One revolve action: ``kind``, the states ``start`` -> ``end`` it concerns (equal for
    takeshot/restore; i-1 -> i for the turns of step i), and the ``slot`` (or None).

    >>> str(Action("advance", 0, 3)), str(Action("takeshot", 3, 3, 1)), str(Action("youturn", 2, 3))
    ('advance 0->3', 'takeshot 3 @1', 'youturn 3')
    """
    kind: str
    start: int
    end: int
    slot: object = None

    def __str__(self):
        if self.kind == "advance":
            return f"advance {self.start}->{self.end}"
        if self.kind in ("takeshot", "restore"):
            return f"{self.kind} {self.end} @{self.slot}"
        return f"{self.kind} {self.end}"


class RevolveSchedule(NamedTuple):
    """The result of ``revolve``: ``steps``, ``snapshots`` and the tuple of ``actions``;
    iterable; ``advances`` is the number of advanced (untaped) forward steps.

    >>> s = revolve(6, 2); len(s) == len(s.actions), s.advances
    (True, 8)
    """
    steps: int
    snapshots: int
    actions: tuple

    def __iter__(self):
        return iter(self.actions)

    def __len__(self):
        return len(self.actions)

    def __getitem__(self, i):
        return self.actions[i]

    @property
    def advances(self):
        """Number of steps run forward without taping (eq. (2) of Griewank & Walther).

        >>> revolve(10, 1).advances
        45
        """
        return sum(a.end - a.start for a in self.actions if a.kind == "advance")


def _beta(c, r):
    return comb(c + r, c) if r >= 0 else 0


def _repetition(n, c):
    r = 0
    while _beta(c, r) < n:
        r += 1
    return r


def optimal_advances(steps, snapshots):
    """Griewank & Walther (2000), eq. (2): the least number of advanced steps.

    >>> optimal_advances(10, 1), optimal_advances(10, 10), optimal_advances(10, 3)
    (45, 9, 15)
    """
    r = _repetition(steps, snapshots)
    return r * steps - _beta(snapshots + 1, r - 1)


def revolve(steps, snapshots):
    """Griewank's binomial schedule for ``steps`` steps and ``snapshots`` slots (the input's
    included) as a ``RevolveSchedule`` of ``Action``s (built without recursion).

    >>> revolve(3, 1).advances, revolve(3, 3).advances
    (3, 2)
    >>> revolve(5, 0)
    Traceback (most recent call last):
    ...
    ValueError: revolve needs at least 1 snapshot slot (the one holding the input), got 0
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"revolve needs steps >= 1, got {steps!r}")
    if isinstance(snapshots, bool) or not isinstance(snapshots, int) or snapshots < 1:
        raise ValueError("revolve needs at least 1 snapshot slot (the one holding the "
                         f"input), got {snapshots!r}")
    acts = [Action("takeshot", 0, 0, 0)]
    first = [True]

    def turn(i):
        acts.append(Action("firsturn" if first[0] else "youturn", i - 1, i))
        first[0] = False

    # tasks: ("rev", s0, n, c, slot) with state s0 current and stored in `slot`,
    #        ("restore", s0, slot)
    stack = [("rev", 0, steps, snapshots, 0)]
    while stack:
        task = stack.pop()
        if task[0] == "restore":
            acts.append(Action("restore", task[1], task[1], task[2]))
            continue
        _, s0, n, c, slot = task
        if n == 1:
            turn(s0 + 1)
        elif c == 1:
            acts.append(Action("advance", s0, s0 + n - 1))
            turn(s0 + n)
            stack.append(("rev", s0, n - 1, 1, slot))
            stack.append(("restore", s0, slot))
        else:
            r = _repetition(n, c)
            m = min(_beta(c, r - 1), n - _beta(c - 1, r - 1))
            acts.append(Action("advance", s0, s0 + m))
            acts.append(Action("takeshot", s0 + m, s0 + m, slot + 1))
            stack.append(("rev", s0, m, c, slot))
            stack.append(("restore", s0, slot))
            stack.append(("rev", s0 + m, n - m, c - 1, slot + 1))
    return RevolveSchedule(steps, snapshots, tuple(acts))


def revolve_plan_ops(schedule):
    """Translate revolve actions into plan ops: advance -> ``forward`` (dropping states that
    are not snapshots once used), turn of step i -> ``forward_save i`` + ``backward i`` then
    ``drop i-1`` (state i-1 is dead once step i is reversed).

    >>> revolve_plan_ops(revolve(2, 1))
    [forward 1, forward_save 2, backward 2, drop 1, forward_save 1, backward 1]
    """
    ops, shots, alive = [], {0}, {0}
    for a in schedule:
        if a.kind == "takeshot":
            shots.add(a.end)
        elif a.kind == "restore":
            continue  # no op: the restored checkpoint is alive
        elif a.kind == "advance":
            for j in range(a.start + 1, a.end + 1):
                ops.append(Op("forward", j))
                alive.add(j)
                if j - 1 not in shots and j - 1 != 0:
                    ops.append(Op("drop", j - 1))
                    alive.discard(j - 1)
        else:  # firsturn / youturn of step a.end
            i = a.end
            ops += [Op("forward_save", i), Op("backward", i)]
            if i - 1 != 0:
                ops.append(Op("drop", i - 1))
                alive.discard(i - 1)
                shots.discard(i - 1)
    return ops


def revolve_strategy(chain, budget=None, snapshots=None):
    """Strategy ``revolve``: binomial checkpointing with ``snapshots`` slots; with a budget
    and no ``snapshots``, every slot count 1..L is tried and the cheapest plan within the
    budget kept; with neither, ⌈log2 L⌉ + 1 slots.

    >>> from ckpt.planner import zoo
    >>> revolve_strategy(zoo.uniform(3), snapshots=1)[:3]
    [forward 1, forward 2, drop 1]
    """
    L = len(chain)
    if snapshots is not None:
        return revolve_plan_ops(revolve(L, int(snapshots)))
    if budget is None:
        return revolve_plan_ops(revolve(L, max(1, (L - 1).bit_length() + 1)))
    return best_within(chain, (revolve_plan_ops(revolve(L, c)) for c in range(1, L + 1)),
                       budget)
