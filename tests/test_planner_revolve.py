"""revolve: Griewank's action vocabulary and the optimal number of advances (Griewank and
Walther 2000, eq. (2)), computed here independently from the binomial numbers."""
from math import comb

import pytest

from ckpt.planner import plan, revolve, simulate, zoo
from ckpt.planner.strategies.revolve import revolve_plan_ops


def closed_form(l, s):
    """t(l, s) = r·l - β(s+1, r-1) with β(s, r) = C(s+r, s), r minimal with β(s, r) >= l."""
    beta = lambda a, b: comb(a + b, a) if b >= 0 else 0
    r = 0
    while beta(s, r) < l:
        r += 1
    return r * l - beta(s + 1, r - 1)


def replay(sched):
    """Run the actions on a toy machine; returns the advance count after checking that every
    step is reversed once, in order, from the right state, with at most `snapshots` slots."""
    current, slots, reversed_, advances = None, {}, [], 0
    for a in sched:
        if a.kind == "takeshot":
            assert a.slot < sched.snapshots and (current == a.end or current is None)
            slots[a.slot] = a.end
            current = a.end
        elif a.kind == "restore":
            assert slots[a.slot] == a.end
            current = a.end
        elif a.kind == "advance":
            assert a.start == current and a.end > a.start
            advances += a.end - a.start
            current = a.end
        else:
            assert a.kind in ("firsturn", "youturn") and a.start == current
            assert a.kind == ("firsturn" if not reversed_ else "youturn")
            expected = sched.steps - len(reversed_)
            assert a.end == expected, (a, expected)
            reversed_.append(a.end)
            current = None
    assert reversed_ == list(range(sched.steps, 0, -1))
    return advances


@pytest.mark.parametrize("steps", list(range(1, 41)) + [64, 100, 257, 1000])
@pytest.mark.parametrize("snapshots", [1, 2, 3, 4, 5, 7, 10, 40])
def test_advances_equal_the_closed_form(steps, snapshots):
    sched = revolve(steps, snapshots)
    assert replay(sched) == sched.advances == closed_form(steps, snapshots)


def test_known_values():
    assert closed_form(10, 1) == 45 and closed_form(10, 10) == 9
    assert revolve(10, 3).advances == 15
    assert revolve(10_000, 10).advances == closed_form(10_000, 10)
    assert str(revolve(3, 2)[0]) == "takeshot 0 @0"


def test_invalid_arguments():
    with pytest.raises(ValueError, match="at least 1 snapshot"):
        revolve(5, 0)
    with pytest.raises(ValueError, match="steps >= 1"):
        revolve(0, 3)


@pytest.mark.parametrize("steps, snapshots", [(1, 1), (5, 1), (7, 2), (12, 3), (20, 20)])
def test_revolve_plans_replay_and_match_counts(steps, snapshots):
    c = zoo.uniform(steps, cost=1.0, nbytes=8)
    ops = revolve_plan_ops(revolve(steps, snapshots))
    r = simulate(c, ops)
    # every advance and every turn is one forward; cost 1 per forward, 2 per backward
    assert r.compute == closed_form(steps, snapshots) + steps + 2 * steps
    # memory: snapshots (input included) + the current state + the turn's x̄ and δs
    assert r.peak <= 8 * (snapshots + 1) + 8 + 2 * 8


def test_more_snapshots_never_cost_more():
    c = zoo.uniform(30)
    costs = [plan(c, "revolve", snapshots=k).compute for k in range(1, 31)]
    assert costs == sorted(costs, reverse=True)
