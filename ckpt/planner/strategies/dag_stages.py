"""Graph schedules in Checkmate's stage form (Jain et al. 2020, section 4): stage t computes
node t for the first time, after recomputing what it needs; ``R[t]`` lists the nodes stage t
computes and ``S[t]`` the values resident when it starts (``S[0]`` is empty). ``stage_ops``
turns (R, S) into explicit ``compute``/``free`` ops, freeing each value as soon as nothing
later in the stage reads it and the next stage does not keep it (Checkmate's FREE rule), and
values the stage neither reads nor keeps when it starts.

>>> from ckpt.planner.graph import Graph, Node
>>> t = Graph([Node("a", [], 1, 1, 4), Node("b", ["a"], 1, 1, 4)]).training()
>>> stage_ops(t, [[0], [1], [2], [3]], [set(), {0}, {0, 1}, {0, 2}])[:4]
[compute a, compute b, compute backward(b), free b]
"""
from ..graph_simulate import GraphOp

__all__ = ["stage_ops", "closure", "eager_frees"]


def closure(tg, t, resident):
    """The nodes stage t must compute, in index order: node t and, transitively, every dep
    not in ``resident``.

    >>> from ckpt.planner.graph_training import TrainingGraph
    >>> tg = TrainingGraph(list("xyz"), cost=[1] * 3, size=[1] * 3, deps=[[], [0], [1]])
    >>> closure(tg, 2, set()), closure(tg, 2, {1})
    ([0, 1, 2], [2])
    """
    need, stack = {t}, [t]
    while stack:
        for i in tg.deps[stack.pop()]:
            if i not in resident and i not in need:
                need.add(i)
                stack.append(i)
    return sorted(need)


def stage_ops(tg, R, S):
    """Explicit ops of the stage schedule (R, S) (see the module doc). A node of R[t] that
    is already resident is not computed again.

    >>> from ckpt.planner.graph_training import TrainingGraph
    >>> tg = TrainingGraph(["x", "y"], cost=[1, 1], size=[1, 1], deps=[[], [0]])
    >>> stage_ops(tg, [[0], [0, 1]], [set(), set()])
    [compute x, free x, compute x, compute y, free x, free y]
    """
    n = len(tg)
    names, deps = tg.names, tg.deps
    ops, resident = [], set()

    def free(i):
        ops.append(GraphOp("free", names[i]))
        resident.discard(i)

    for t in range(n):
        keep = S[t + 1] if t + 1 < n else set()
        comp = sorted(set(R[t]) | {t})
        reads = set(comp).union(*(deps[k] for k in comp))
        for i in sorted(resident - keep - reads):
            free(i)
        for pos, k in enumerate(comp):
            if k not in resident:
                ops.append(GraphOp("compute", names[k]))
                resident.add(k)
            later = comp[pos + 1:]
            for i in (*deps[k], k):
                if i in resident and i not in keep and not any(
                        j == i or i in deps[j] for j in later):
                    free(i)
        for i in sorted(resident - keep):
            free(i)
    return ops


def eager_frees(tg, ops):
    """The same computes with every value freed right after its last read (or right after it
    is computed, when nothing reads it) before the schedule freed it: memory never rises,
    compute is unchanged.

    >>> from ckpt.planner.graph_training import TrainingGraph
    >>> tg = TrainingGraph(list("xyz"), cost=[1] * 3, size=[1] * 3, deps=[[], [0], [1]])
    >>> eager_frees(tg, ["compute x", "compute y", "compute z", "free x", "free y", "free z"])
    [compute x, compute y, free x, compute z, free y, free z]
    """
    ops = [GraphOp.parse(o) for o in ops]
    idx = {nm: k for k, nm in enumerate(tg.names)}
    after = {}                 # position of a compute -> the values to free right after it
    open_at, last_read = {}, {}
    for pos, op in enumerate(ops):
        k = idx[op.name]
        if op.kind == "compute":
            for i in tg.deps[k]:
                last_read[i] = pos
            open_at[k] = pos
            last_read[k] = pos
        else:
            after.setdefault(last_read.pop(k, open_at[k]), []).append(k)
            open_at.pop(k)
    out = []
    for pos, op in enumerate(ops):
        if op.kind == "compute":
            out.append(op)
            out += [GraphOp("free", tg.names[i]) for i in after.get(pos, ())]
    return out


def ops_stages(tg, ops):
    """The stage form (R, S) of a valid schedule, the inverse of ``stage_ops``: stage t runs
    up to the first computation of node t; R[t] is what it computes, S[t] what is resident
    at its start and read in the stage or kept into the next (resident values that are
    neither are left out: ``stage_ops`` frees them). None when the schedule is not in
    Checkmate's class: first computations out of index order, or a node computed twice in
    one stage.

    >>> from ckpt.planner.graph_training import TrainingGraph
    >>> tg = TrainingGraph(["x", "y"], cost=[1, 1], size=[1, 1], deps=[[], [0]])
    >>> R, S = ops_stages(tg, ["compute x", "free x", "compute x", "compute y", "free x",
    ...                        "free y"])
    >>> R, S
    ([[0], [0, 1]], [set(), set()])
    >>> stage_ops(tg, R, S)
    [compute x, free x, compute x, compute y, free x, free y]
    >>> ops_stages(tg, ["compute x", "compute y", "free y", "compute y", "free x", "free y"])
    """
    idx = {nm: k for k, nm in enumerate(tg.names)}
    n = len(tg)
    R, starts, resident, done = [], [], set(), 0
    for op in map(GraphOp.parse, ops):
        k = idx[op.name]
        if op.kind == "free":
            resident.discard(k)
            continue
        if len(R) == done:            # the first computation of stage `done`
            if done == n:
                return None
            R.append(set())
            starts.append(set(resident))
        if k > done or k in R[-1]:
            return None
        R[-1].add(k)
        resident.add(k)
        done += k == done
    if done < n:
        return None
    S = [set() for _ in range(n)]
    for t in range(n - 1, 0, -1):
        reads = R[t].union(*(tg.deps[k] for k in R[t]))
        keep = S[t + 1] if t + 1 < n else set()
        S[t] = {i for i in starts[t] if i in reads or i in keep}
    return [sorted(r) for r in R], S
