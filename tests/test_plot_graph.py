"""ckpt.plot.graph_schedule: the node x stage picture of a graph plan. Its cells equal what
the ops say (a hand-made plan written out cell by cell; zoo plans checked op by op and the
kept cells' bytes against ``simulate_graph``'s memory), the image shows those cells, the
file is a PNG, ``ckpt plan --plot`` writes it, and a chain Plan is refused."""
import os

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ckpt import planner, plot  # noqa: E402
from ckpt.cli import main  # noqa: E402
from ckpt.planner import GraphPlan, graph_zoo  # noqa: E402
from ckpt.planner.graph_training import TrainingGraph  # noqa: E402
from ckpt.plot.graph_schedules import BACKWARD, EMPTY, FIRST, KEPT, RECOMPUTED  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"
_, K, F, B, R = EMPTY, KEPT, FIRST, BACKWARD, RECOMPUTED


def small_plan():
    t = TrainingGraph(["a", "b", "c", "dc", "db", "da"], cost=[1] * 6, size=[4] * 6,
                      deps=[[], [0], [1], [1, 2], [0, 3], [4]],
                      backward=[False, False, False, True, True, True])
    ops = ["compute a", "compute b", "free a", "compute c", "compute dc", "free c",
           "free b", "compute a", "compute db", "free dc", "compute da", "free a",
           "free db", "free da"]
    return GraphPlan(t, ops, strategy="by hand", budget=64)


def test_a_hand_made_plan_cell_by_cell():
    m = plot.graph_schedule_matrix(small_plan())
    assert m.cells.tolist() == [[F, K, _, _, R, K],   # a: freed after b, recomputed for db
                                [_, F, K, K, _, _],   # b
                                [_, _, F, K, _, _],   # c
                                [_, _, _, B, K, _],   # dc
                                [_, _, _, _, B, K],   # db
                                [_, _, _, _, _, B]]   # da
    assert m.stage_nodes == (0, 1, 2, 3, 4, 5)
    assert m.names == ("a", "b", "c", "dc", "db", "da")
    assert m.backward.tolist() == [False, False, False, True, True, True]


def stages_of(ops):
    """Op positions of each stage, split here from the op list: a stage starts at the first
    compute after the previous stage's first computation of a node."""
    spans, seen, start, closed = [], set(), None, True
    for pos, op in enumerate(ops):
        if op.kind != "compute":
            continue
        if closed:
            if start is not None:
                spans.append((start, pos))
            start, closed = pos, False
        if op.name not in seen:
            seen.add(op.name)
            closed = True
    spans.append((start, len(ops)))
    return spans


@pytest.fixture(scope="module")
def zoo_plans():
    g = graph_zoo.random_layered(nodes=12, seed=3)
    lo = planner.plan_graph(g, "recompute_all").peak
    hi = planner.plan_graph(g, "store_all").peak
    return {"store_all": planner.plan_graph(g, "store_all"),
            "recompute_all": planner.plan_graph(g, "recompute_all"),
            "dag_optimal": planner.plan_graph(g, "dag_optimal", budget=(lo + hi) // 2,
                                              time_limit=10)}


@pytest.mark.parametrize("strategy", ["store_all", "recompute_all", "dag_optimal"])
def test_zoo_plans_cells_match_their_ops(zoo_plans, strategy):
    p = zoo_plans[strategy]
    tg, ops = p.training, p.ops
    m = plot.graph_schedule_matrix(p)
    n = len(tg)
    spans = stages_of(ops)
    assert m.cells.shape == (n, len(spans))
    after = p.simulate().after
    seen = set()
    for t, (start, end) in enumerate(spans):
        col = m.cells[:, t]
        computed = [tg.index(op.name) for op in ops[start:end] if op.kind == "compute"]
        first = [k for k in computed if tg.names[k] not in seen]
        again = {k for k in computed if tg.names[k] in seen}
        seen.update(tg.names[k] for k in first)
        assert first == [m.stage_nodes[t]]
        assert col[first[0]] == (BACKWARD if tg.backward[first[0]] else FIRST)
        assert set(np.flatnonzero(col == RECOMPUTED)) == again
        # kept: the bytes resident when the stage starts, as the replay counts them
        before = after[start - 1] if start else tg.constant_bytes
        assert int(tg.size[col == KEPT].sum()) == before - tg.constant_bytes
    assert sorted(m.stage_nodes) == list(range(n))
    nrec = int((m.cells == RECOMPUTED).sum())
    if strategy == "store_all":
        assert nrec == 0 and p.overhead == 0
    else:
        assert (nrec > 0) == (p.overhead > 0)
    if strategy == "recompute_all":
        assert nrec > 0


def test_the_picture_shows_the_matrix_and_the_file_is_a_png(tmp_path, zoo_plans):
    p = zoo_plans["dag_optimal"]
    path = tmp_path / "g.png"
    fig = plot.graph_schedule(p, path=str(path))
    assert path.read_bytes().startswith(PNG)
    ax = fig.axes[0]
    (im,) = ax.images
    assert im.get_gid() == "graph_schedule"
    assert np.array_equal(im.get_array(), plot.graph_schedule_matrix(p).cells)
    title = ax.get_title()
    assert "'dag_optimal'" in title and planner.format_size(p.peak) in title
    assert planner.format_size(p.budget) in title and f"+{100 * p.overhead:.1f}%" in title
    labels = ax.get_yticklabels()
    assert [t.get_text() for t in labels] == list(p.training.names)
    red = [t.get_color() == "#d62728" for t in labels]
    assert red == p.training.backward.tolist()
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("recomputed" in x for x in legend) and any("kept" in x for x in legend)


def test_names_are_escaped_and_shortened_and_big_graphs_hide_labels():
    long = "n\x1b[31m" + "x" * 40
    t = TrainingGraph([long, "b\nc"], cost=[1, 1], size=[1, 1], deps=[[], [0]])
    fig = plot.graph_schedule(GraphPlan(t, [f"compute {long}", "compute b\nc",
                                            f"free {long}", "free b\nc"]))
    got = [x.get_text() for x in fig.axes[0].get_yticklabels()]
    assert got[1] == "b\\nc" and got[0].startswith("n\\x1b[31m") and got[0].endswith("…")
    assert len(got[0]) == 28
    big = planner.plan_graph(graph_zoo.random_layered(nodes=160, seed=1), "store_all")
    assert len(big.training) > plot.graph_schedules.MAX_LABELS
    ax = plot.graph_schedule(big).axes[0]
    assert ax.get_yticks().tolist() == [] and "labels hidden" in ax.get_ylabel()


def test_a_chain_plan_is_a_clear_type_error():
    p = planner.plan(planner.zoo.uniform(3), "store_all")
    for fn in (plot.graph_schedule, plot.graph_schedule_matrix):
        with pytest.raises(TypeError, match="needs a GraphPlan .* got Plan; draw a chain "
                                            "Plan with ckpt.plot.schedule"):
            fn(p)


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_plan_plot_draws_graph_and_chain_schedules(capsys, tmp_path, monkeypatch):
    g = graph_zoo.random_layered(nodes=12, seed=4)
    (tmp_path / "g.json").write_text(g.to_json())
    drawn = []
    real = plot.graph_schedule
    monkeypatch.setattr(plot, "graph_schedule", lambda p: drawn.append(p) or real(p))
    out_png = tmp_path / "g.png"
    rc, out, err = run(capsys, "plan", str(tmp_path / "g.json"), "-s", "recompute_all",
                       "--plot", str(out_png))
    assert rc == 0, err
    assert out_png.read_bytes().startswith(PNG) and f"wrote {out_png}" in out
    assert drawn == [planner.plan_graph(g, "recompute_all")]
    chain_png = tmp_path / "c.png"
    rc, out, err = run(capsys, "plan", "uniform", "--plot", str(chain_png))
    assert rc == 0, err
    assert chain_png.read_bytes().startswith(PNG) and len(drawn) == 1
    rc, out, err = run(capsys, "plan", str(tmp_path / "g.json"), "--plot",
                       str(tmp_path / "g.txt"))
    assert rc != 0 and "plot" in err and not (tmp_path / "g.txt").exists()
