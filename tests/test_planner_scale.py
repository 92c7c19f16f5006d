"""The chain planner at scale (issue 12): slot rounding in ``optimal``, the fast program
against a plain-loop reference of the same recurrence, and strategies that never wait for
the least-peak program on long chains.

Oracles here are written independently of ``ckpt/planner/strategies``:

- ``peak_matrix``: the memory of every op of every schedule of the class, as counts of the
  chain's size fields (from the simulator's documented rules), so one matrix product gives
  every schedule's peak under any sizes, e.g. each size rounded up to whole slots;
- ``reference_cost``: the least-compute recurrence (docs/planner.md, "The dynamic
  programs") as plain recursive Python over the states it needs.
"""
import importlib
import math
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ckpt.planner import BudgetError, Chain, Stage, plan, simulate
from ckpt.planner.strategies.optimal import optimal, rebuild, solve
from ckpt.planner.strategies.store_all import store_all

from test_planner import all_schedules


# ---- oracles -------------------------------------------------------------------------------

def random_chain(rng, L, scale, heavy_forward=False):
    """A heterogeneous chain whose sizes are up to ``scale`` bytes (costs in quarters, so
    every sum is exact in float64). ``heavy_forward``: forward transients up to 4 x scale
    and small ones when saving, so that the forward requirement of a split often binds."""
    f_high, fs_high = (4 * scale, scale // 8) if heavy_forward else (scale // 2, scale // 2)
    stages = []
    for i in range(L):
        x = int(rng.integers(0, scale + 1))
        stages.append(Stage(f"s{i + 1}", int(rng.integers(1, 21)) / 4,
                            int(rng.integers(1, 41)) / 4, x,
                            x + int(rng.integers(0, 2 * scale + 1)),
                            forward_transient=int(rng.integers(0, f_high + 1)),
                            backward_transient=int(rng.integers(0, scale // 2 + 1)),
                            forward_save_transient=int(rng.integers(0, fs_high + 1))))
    return Chain(stages, input_bytes=int(rng.integers(0, scale + 1)),
                 param_bytes=int(rng.integers(0, scale + 1)))


def fields(chain):
    """The chain's size fields, in the order ``peak_matrix`` counts them."""
    L = len(chain)
    names = ([("x", i) for i in range(L + 1)] + [("xbar", i) for i in range(1, L + 1)]
             + [(f, i) for f in ("of", "ofs", "ob") for i in range(1, L + 1)])
    value = {"x": chain.x, "xbar": chain.xbar, "of": chain.of, "ofs": chain.ofs, "ob": chain.ob}
    return names, np.array([int(value[f][i]) for f, i in names], dtype=np.int64)


def peak_matrix(chain, schedules):
    """M[k, j, f]: how many times size field f counts in the memory while op j of schedule k
    runs (parameters left out). δ_i is the size of x_i for 1 <= i < L and nothing otherwise;
    shorter schedules are padded with zero rows."""
    L = len(chain)
    names, _ = fields(chain)
    col = {n: j for j, n in enumerate(names)}

    def buf(kind, i):                   # a buffer's size as field counts
        if kind == "delta":
            return {("x", i): 1} if 1 <= i < L else {}
        return {(kind, i): 1}

    def vec(*bufs):
        v = np.zeros(len(names), dtype=np.int64)
        for kind, i in bufs:
            for n, c in buf(kind, i).items():
                v[col[n]] += c
        return v

    rows = []
    for ops in schedules:
        held = vec(("x", 0))                  # what is alive, as field counts
        during_all = []
        for op in ops:
            i = op.stage
            if op.kind == "forward":
                during_all.append(held + vec(("x", i), ("of", i)))
                held = held + vec(("x", i))
            elif op.kind == "forward_save":
                during_all.append(held + vec(("xbar", i), ("ofs", i)))
                held = held + vec(("xbar", i))
            elif op.kind == "backward":
                during_all.append(held + vec(("delta", i - 1), ("ob", i)))
                held = held - vec(("xbar", i), ("delta", i)) + vec(("delta", i - 1))
            else:                                 # drop
                during_all.append(held)
                held = held - vec(("x", i))
        rows.append(during_all)
    width = max(len(r) for r in rows)
    M = np.zeros((len(rows), width, len(names)), dtype=np.int64)
    for k, r in enumerate(rows):
        M[k, :len(r)] = r
    return M


def reference_cost(chain, budget, slots):
    """C(1, L, slots - ⌈x_0/u⌉) of the least-compute recurrence, by plain recursion over the
    states it reaches (u = (budget - param_bytes) / slots; a buffer taken costs ⌈size/u⌉
    slots and gives back the same when freed; what an op adds is rounded up as one sum)."""
    L, S = len(chain), int(slots)
    avail = int(budget) - chain.param_bytes
    if avail <= 0:
        return math.inf
    x, xb = [int(v) for v in chain.x], [int(v) for v in chain.xbar]
    of, ofs, ob = [int(v) for v in chain.of], [int(v) for v in chain.ofs], [int(v) for v in chain.ob]
    uf, ub = [float(v) for v in chain.uf], [float(v) for v in chain.ub]
    d = [x[i] if 1 <= i < L else 0 for i in range(L + 1)]

    def up(v):
        return -(-v * S // avail)

    @lru_cache(maxsize=None)
    def C(s, t, m):
        if s == t:
            ok = m >= up(max(xb[s] + ofs[s], xb[s] + d[s - 1] + ob[s]))
            return uf[s] + ub[s] if ok else math.inf
        best = math.inf
        if m >= up(xb[s] + ofs[s]) and m >= up(xb[s] + d[s] + d[s - 1] + ob[s]) - up(d[t]):
            best = uf[s] + ub[s] + C(s + 1, t, m - up(xb[s]))
        peak_fwd, fsum = 0, 0.0
        for s2 in range(s + 1, t + 1):
            j = s2 - 1
            peak_fwd = max(peak_fwd, (x[j - 1] if j > s else 0) + x[j] + of[j])
            fsum += uf[j]
            if m >= up(peak_fwd):
                right = C(s2, t, m - up(x[s2 - 1]))
                if right < best:
                    best = min(best, fsum + right + C(s, s2 - 1, m + up(d[t]) - up(d[s2 - 1])))
        return best

    return C(1, L, S - up(x[0]))


def rounded_up_optimum(chain, M, costs, budget, slots):
    """The least compute over the class when every buffer and transient is rounded up to
    whole slots once (a schedule fits when its rounded peak is at most ``slots``)."""
    avail = int(budget) - chain.param_bytes
    if avail <= 0:
        return math.inf
    _, sizes = fields(chain)
    rounded = -(-sizes * int(slots) // avail)
    fits = (M @ rounded).max(axis=1) <= slots
    return float(costs[fits].min()) if fits.any() else math.inf


def exact_optimum(chain, M, costs, budget):
    """The least compute over the class within ``budget`` bytes, sizes as they are."""
    peaks = exact_peaks(chain, M)
    return float(costs[peaks <= budget].min()) if (peaks <= budget).any() else math.inf


def exact_peaks(chain, M):
    _, sizes = fields(chain)
    return (M @ sizes).max(axis=1) + chain.param_bytes


def class_of(chain):
    schedules = list(all_schedules(1, len(chain)))
    costs = np.array([simulate(chain, ops, timeline=False).compute for ops in schedules])
    return schedules, peak_matrix(chain, schedules), costs


# ---- rounding ------------------------------------------------------------------------------

def test_the_peak_matrix_is_the_simulator():
    rng = np.random.default_rng(0)
    for L in (1, 3, 5):
        chain = random_chain(rng, L, 2**16)
        schedules, M, _ = class_of(chain)
        _, sizes = fields(chain)
        peaks = (M @ sizes).max(axis=1) + chain.param_bytes
        assert peaks.tolist() == [simulate(chain, ops, timeline=False).peak for ops in schedules]


def test_a_chain_the_old_rounding_found_nothing_for():
    """Found by the oracle below against the old rounding (⌊(δ_t − δ_r)/u⌋ given back after
    a split): at this budget it found no schedule, while rounding each buffer up once fits
    one costing 162.5; the program now finds it."""
    rows = [(8.75, 15.75, 1163501, 1163706, 180231, 180227), (9.5, 9.25, 5363166, 21453270,
            409607, 540675), (9.75, 2.75, 2503788, 7511467, 507911, 131075), (2.0, 2.25,
            186201, 186452, 737287, 114691), (1.75, 17.0, 1605308, 4816407, 163847, 147459),
            (9.5, 12.0, 3669829, 14680198, 196615, 475139), (4.0, 16.25, 6092221, 18277037,
            262151, 638979)]
    chain = Chain([Stage(f"s{i}", *r[:4], forward_transient=r[4], backward_transient=r[5])
                   for i, r in enumerate(rows)], input_bytes=1048532)
    _, M, costs = class_of(chain)
    budget = 30838631
    assert rounded_up_optimum(chain, M, costs, budget, 500) == 162.5
    tb = solve(chain, budget, 500)
    assert tb.cost <= 162.5
    assert simulate(chain, rebuild(tb)).peak <= budget


def test_rounding_is_never_worse_than_rounding_each_buffer_up_once():
    """900 budgets on random chains of 2-7 stages with sizes up to 1 MiB, ~2,000 runs with
    499 or 500 slots and a few coarse counts: the program is never dearer than the class's
    optimum with every size rounded up once, equals the plain-loop reference, and its
    schedule fits the budget exactly."""
    rng = np.random.default_rng(12)
    budgets = worse = 0
    for _ in range(30):
        chain = random_chain(rng, int(rng.integers(2, 8)), 2**20)
        schedules, M, costs = class_of(chain)
        peaks = exact_peaks(chain, M)
        lo, hi = chain.min_budget, simulate(chain, store_all(chain)).peak
        for budget in np.unique(rng.integers(lo, hi + 1, size=30)):
            budget = int(budget)
            for slots in (500, 500, 37, 9)[:2 + (budget % 3 == 0)]:
                slots = slots if slots != 500 or budgets % 2 else 499
                tb = solve(chain, budget, slots)
                want = rounded_up_optimum(chain, M, costs, budget, slots)
                assert tb.cost <= want, (chain, budget, slots, tb.cost, want)
                assert tb.cost == reference_cost(chain, budget, slots)
                if tb.cost < want:
                    worse += 1
                if tb.cost < math.inf:
                    sim = simulate(chain, rebuild(tb), timeline=False)
                    assert sim.peak <= budget and sim.compute == tb.cost
                    assert tb.cost >= costs[peaks <= budget].min()
                budgets += 1
    assert budgets >= 2000
    assert worse > 0          # rounding sums once is sometimes strictly better


def test_with_one_slot_per_byte_the_program_is_exact():
    rng = np.random.default_rng(7)
    for _ in range(24):
        chain = random_chain(rng, int(rng.integers(2, 8)), 40)
        schedules, M, costs = class_of(chain)
        lo, hi = chain.min_budget, simulate(chain, store_all(chain)).peak
        for budget in range(lo, hi + 1, max(1, (hi - lo) // 6)):
            slots = budget - chain.param_bytes
            best = exact_optimum(chain, M, costs, budget)
            assert solve(chain, budget, slots).cost == best == reference_cost(chain, budget, slots)
            p = optimal(chain, budget, slots=slots, exhaustive_max=0)
            assert simulate(chain, p).compute == best


# ---- long chains: strategies that never wait for the least-peak program ------------------

def p_budget(chain, name):
    return simulate(chain, store_all(chain)).peak if name == "store_all" else "1TiB"


@pytest.mark.parametrize("name", ["store_all", "sqrt", "greedy", "recursive", "revolve"])
def test_fixed_strategies_do_not_compute_the_least_peak(name):
    from ckpt.planner import zoo
    chain = zoo.uniform(2000 if name in ("store_all", "sqrt") else 300, nbytes="1MiB")
    p = plan(chain, name, budget=p_budget(chain, name))
    assert p.peak <= p.budget
    assert "min_peak" not in chain._cache           # min_budget was never computed


def test_a_plan_that_does_not_fit_states_its_own_peak():
    from ckpt.planner import zoo
    chain = zoo.uniform(2000, nbytes="1MiB")
    with pytest.raises(BudgetError) as e:
        plan(chain, "store_all", budget="1GiB")
    peak = simulate(chain, store_all(chain)).peak
    assert e.value.minimum == peak and f"({peak} bytes)" in str(e.value)
    assert "strategy 'store_all' needs" in str(e.value) and "above the budget 1.0 GiB" in str(e.value)
    assert "min_peak" not in chain._cache
    # optimal still starts from the least peak, and says so
    small = zoo.uniform(20, nbytes="1MiB")
    with pytest.raises(BudgetError, match="below the minimum feasible"):
        plan(small, "optimal", budget="1MiB")


# ---- the least feasible peak without the O(L^3) program ----------------------------------

def test_min_budget_is_the_min_peak_programs_minimum():
    """1,000 random chains of 1-12 stages: ``least_peak`` equals the full min-peak program's
    minimum, through the meeting bounds on most and through the program on the rest."""
    from ckpt.planner.min_budget import least_peak, peak_bounds
    from ckpt.planner.min_peak import min_peak_table
    rng = np.random.default_rng(2026)
    met = 0
    for n in range(1000):
        chain = random_chain(rng, int(rng.integers(1, 13)), int(rng.choice([8, 40, 2**20])))
        want = min_peak_table(chain).minimum
        lo, hi = peak_bounds(chain)
        assert lo <= want <= hi, (chain, lo, want, hi)
        assert least_peak(chain) == want
        met += lo == hi
    assert 800 < met < 1000             # both paths are exercised


def test_min_budget_of_long_chains_skips_the_cubic_program():
    from ckpt.planner import zoo
    from ckpt.planner.min_peak import min_peak_table
    rng = np.random.default_rng(4000)
    for chain in (random_chain(rng, 150, 2**20), zoo.vgg16(), zoo.resnet(), zoo.transformer()):
        assert chain.min_budget == min_peak_table(chain).minimum
        assert "min_peak" not in chain._cache
    chain = random_chain(rng, 4000, 2**20)
    assert chain.min_budget > chain.param_bytes and chain.min_budget_known
    assert "min_peak" not in chain._cache


def test_bounds_that_do_not_meet_on_a_long_chain_raise(monkeypatch):
    from ckpt.planner import PlannerError
    from ckpt.planner import min_budget
    rng = np.random.default_rng(2026)
    while True:
        chain = random_chain(rng, 9, 8)
        lo, hi = min_budget.peak_bounds(chain)
        if lo < hi:
            break
    monkeypatch.setattr(min_budget, "EXACT_MAX_STAGES", 8)
    with pytest.raises(PlannerError, match=f"between {lo} and {hi} bytes"):
        chain.min_budget
    monkeypatch.setattr(min_budget, "EXACT_MAX_STAGES", 9)
    assert lo <= chain.min_budget <= hi


def test_the_pruned_program_equals_the_plain_loop_on_longer_chains():
    """Chains of 12-20 stages and 200-500 slots, where the program skips most (split, column)
    pairs: the same optimum as the plain-loop reference, and a schedule that fits."""
    rng = np.random.default_rng(30)
    for _ in range(3):
        chain = random_chain(rng, int(rng.integers(12, 21)), 2**20)
        lo, hi = chain.min_budget, simulate(chain, store_all(chain)).peak
        for f in (0.03, 0.2, 0.5):
            budget, slots = int(lo + (hi - lo) * f), int(rng.integers(200, 501))
            tb = solve(chain, budget, slots)
            assert tb.cost == reference_cost(chain, budget, slots)
            if tb.cost < math.inf:
                sim = simulate(chain, rebuild(tb), timeline=False)
                assert sim.peak <= budget and sim.compute == tb.cost


# ---- the blocked program against the plain loop, with every path of it taken --------------

PROGRAM = importlib.import_module("ckpt.planner.strategies.optimal")


@contextmanager
def blocks(grid, sub_grid, small_box, small_step=0):
    """Run the program with blocks of ``grid`` columns, sub-grids every ``sub_grid`` columns
    in any box of at least ``small_box`` triples (0: in every box), and every split of a
    block evaluated at once where that is at most ``small_step`` triples."""
    names = ("GRIDS", "SUB_GRID", "SMALL_BOX", "SMALL_STEP")
    saved = [getattr(PROGRAM, name) for name in names]
    for name, value in zip(names, (((None, grid),), sub_grid, small_box, small_step)):
        setattr(PROGRAM, name, value)
    try:
        yield
    finally:
        for name, value in zip(names, saved):
            setattr(PROGRAM, name, value)


BLOCKINGS = [(1, 1, 0), (2, 2, 0), (5, 2, 0), (8, 3, 0), (16, 4, 0), (16, 4, 10**9),
             (16, 4, 0, 10**9)]


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), L=st.integers(2, 11), frac=st.floats(0, 1),
       slots=st.integers(6, 120), blocking=st.sampled_from(BLOCKINGS), heavy=st.booleans())
def test_the_blocked_program_equals_the_plain_loop(seed, L, frac, slots, blocking, heavy):
    """Random chains, budgets from the least peak to store-all's, coarse and fine slots, and
    blocks from one column (no pruning) to sub-grids in every box: the same optimum as the
    plain-loop reference, and a schedule that fits."""
    chain = random_chain(np.random.default_rng(seed), L, 2**20, heavy_forward=heavy)
    lo, hi = chain.min_budget, simulate(chain, store_all(chain)).peak
    budget = int(lo + (hi - lo) * frac)
    with blocks(*blocking):
        tb = solve(chain, budget, slots)
    assert tb.cost == reference_cost(chain, budget, slots)
    if tb.cost < math.inf:
        sim = simulate(chain, rebuild(tb), timeline=False)
        assert sim.peak <= budget and sim.compute == tb.cost


def test_sub_grids_and_cut_splits_are_exercised(monkeypatch):
    """The chains above take the sub-grid path and meet splits that the forward requirement
    cuts inside a block; with the cut splits left in, the program goes wrong on some of
    them (so the comparison with the plain loop can tell)."""
    sub_grid_boxes, wrong_without_cuts = 0, 0
    real_sums = PROGRAM._sums

    def counting_sums(*args):
        nonlocal sub_grid_boxes
        sub_grid_boxes += args[5] > 1                  # step between evaluated columns
        return real_sums(*args)

    def sums_without_cuts(W, Y, j0, i0, i1, step, ell, k0, k1, s0, s1, bite, bufs, which):
        no_cuts = (bite[0][:0], bite[1][:0], bite[2][:0], -1)
        return real_sums(W, Y, j0, i0, i1, step, ell, k0, k1, s0, s1, no_cuts, bufs, which)

    rng = np.random.default_rng(5)
    for _ in range(60):
        chain = random_chain(rng, int(rng.integers(3, 10)), 2**20, heavy_forward=True)
        lo, hi = chain.min_budget, simulate(chain, store_all(chain)).peak
        budget, slots = int(lo + (hi - lo) * rng.uniform(0, 0.6)), int(rng.integers(10, 120))
        want = reference_cost(chain, budget, slots)
        with blocks(5, 2, 0):
            monkeypatch.setattr(PROGRAM, "_sums", counting_sums)
            assert solve(chain, budget, slots).cost == want
            monkeypatch.setattr(PROGRAM, "_sums", sums_without_cuts)
            wrong_without_cuts += solve(chain, budget, slots).cost != want
    assert sub_grid_boxes > 0 and wrong_without_cuts > 0


def test_rows_the_root_cannot_reach_are_skipped_and_no_more(monkeypatch):
    """In each block the program computes only the rows whose start the root reaches at
    those columns (``reach_depth``); claiming half that depth skips rows the answer needs,
    which the comparison with the plain loop tells on some of these chains."""
    real_depth = PROGRAM.reach_depth
    rng = np.random.default_rng(7)
    wrong_with_half_depth = 0
    for _ in range(40):
        chain = random_chain(rng, int(rng.integers(3, 10)), 2**20)
        lo, hi = chain.min_budget, simulate(chain, store_all(chain)).peak
        budget, slots = int(lo + (hi - lo) * rng.uniform(0, 0.6)), int(rng.integers(10, 120))
        want = reference_cost(chain, budget, slots)
        with blocks(5, 2, 0):
            assert solve(chain, budget, slots).cost == want
            monkeypatch.setattr(PROGRAM, "reach_depth", lambda a, eA: real_depth(a, eA) // 2)
            wrong_with_half_depth += solve(chain, budget, slots).cost != want
            monkeypatch.setattr(PROGRAM, "reach_depth", real_depth)
    assert wrong_with_half_depth > 0
