"""The simulator: exact byte accounting op by op, and refusal of invalid op lists with the
index of the step that failed."""
import pytest

from ckpt.planner import Chain, InvalidPlanError, Op, Plan, Stage, simulate

# x0 = 1, stages: (x, x̄, o_f, o_b) = (10, 15, 3, 4), (20, 30, 5, 6), (40, 45, 7, 8)
CHAIN = Chain([Stage("a", 1.0, 2.0, 10, 15, 3, 4), Stage("b", 10.0, 20.0, 20, 30, 5, 6),
               Stage("c", 100.0, 200.0, 40, 45, 7, 8)], input_bytes=1, param_bytes=1000)


def test_accounting_store_all():
    ops = ["forward_save 1", "forward_save 2", "forward_save 3", "backward 3", "backward 2",
           "backward 1"]
    r = simulate(CHAIN, ops)
    base = 1000 + 1
    during = [e.during for e in r.timeline]
    after = [e.after for e in r.timeline]
    assert during == [base + 15 + 3, base + 15 + 30 + 5, base + 45 + 45 + 7,
                      base + 90 + 20 + 8,          # backward 3 creates δ2 (20 bytes)
                      base + 45 + 20 + 10 + 6,     # backward 2 frees x̄2, δ2, creates δ1
                      base + 15 + 10 + 0 + 4]      # backward 1 creates no δ0
    assert after == [base + 15, base + 45, base + 90, base + 45 + 20, base + 15 + 10, base]
    assert r.peak == max(during) and r.peak_step == 3
    assert r.compute == 333.0
    assert r.timeline[3].alive == ("x0", "x̄1", "x̄2", "δ2")


def test_accounting_checkpoints():
    ops = ["forward 1", "forward 2", "drop 1", "forward_save 3", "backward 3", "drop 2",
           "forward_save 1", "forward_save 2", "backward 2", "backward 1"]
    r = simulate(CHAIN, ops)
    base = 1001
    assert [e.during for e in r.timeline][:6] == [base + 10 + 3, base + 10 + 20 + 5,
                                                  base + 30, base + 20 + 45 + 7,
                                                  base + 65 + 20 + 8, base + 20 + 20]
    assert r.timeline[5].after == base + 20     # only δ2 left beside x0
    assert r.compute == 1 + 10 + 100 + 200 + 1 + 10 + 20 + 2


@pytest.mark.parametrize("ops, step, message", [
    (["forward 2"], 0, "x1 is not alive"),
    (["forward_save 1", "backward 1"], 1, "δ1 is not alive"),
    (["forward 1", "forward 2", "forward_save 3", "backward 3", "backward 2"], 4,
     "x̄2 is not alive"),
    (["forward_save 1", "forward 1"], 1, "x̄1 is already alive"),
    (["forward 1", "forward 1"], 1, "x1 is already alive"),
    (["forward_save 1", "drop 1"], 1, "x1 is not alive (x̄1 is"),
    (["drop 0"], 0, "x0 is the input"),
    (["forward 4"], 0, "stage 4 is not in 1..3"),
    (["jump 1"], 0, "not an op"),
    (["forward 1", "forward_save 2", "drop 1", "forward_save 3", "backward 3", "backward 2"],
     2, "x1 is still held by x̄2"),
    (["forward_save 1", "forward_save 2", "forward_save 3", "backward 3", "backward 2"], 5,
     "stage 1 was never backpropagated"),
    (["forward_save 1", "forward_save 2", "forward_save 3", "backward 3", "backward 2",
      "backward 1", "backward 1"], 6, "already backpropagated"),
    (["forward 1", "forward_save 1"], 1, "x1 is already alive"),
    (["forward 1", "drop 1", "forward_save 1", "forward_save 2", "forward 3", "forward_save 3",
      "backward 3", "backward 2", "backward 1"], 5, "x3 is already alive"),
    (["forward 1", "forward_save 2", "forward_save 3", "backward 3", "backward 2", "drop 1",
      "forward_save 1", "backward 1", "forward 1"], 9, "still alive at the end of the plan: x1"),
])
def test_invalid_op_lists_fail_at_their_step(ops, step, message):
    with pytest.raises(InvalidPlanError) as e:
        simulate(CHAIN, ops)
    assert e.value.step == step, str(e.value)
    assert message in str(e.value)
    assert str(e.value).startswith(f"step {step} (")


def test_plan_refuses_invalid_ops_and_accepts_tuples():
    with pytest.raises(InvalidPlanError):
        Plan(CHAIN, [Op("backward", 3)])
    p = Plan(CHAIN, [("forward_save", 1), ("forward_save", 2), ("forward_save", 3),
                     ("backward", 3), ("backward", 2), ("backward", 1)])
    assert p.peak == simulate(CHAIN, p.ops).peak and p.overhead == 0.0


def test_op_parsing():
    assert Op.parse("forward_save 3") == Op("forward_save", 3)
    with pytest.raises(ValueError, match="cannot read op"):
        Op.parse("forward three")


def test_late_bytes_are_counted_from_when_they_appear():
    # 50 of the input's 51 bytes appear with stage 1's first forward; 600 of the 1000
    # parameter bytes when backward 3 finishes
    late = Chain(CHAIN.stages, input_bytes=51, param_bytes=1000, input_late_bytes=50,
                 param_late_bytes=600)
    ops = ["forward 1", "forward_save 2", "forward_save 3", "backward 3", "backward 2",
           "drop 1", "forward_save 1", "backward 1"]
    r = simulate(late, ops)
    base = 400 + 1                       # what is alive before the first op
    during = [e.during for e in r.timeline]
    after = [e.after for e in r.timeline]
    assert r.timeline[0].before == base
    assert during[0] == base + 10 + 3            # the first forward 1: its transient only
    assert after[0] == base + 10 + 50            # ... then the late input stays
    b = base + 50
    assert during[3] == b + 10 + 30 + 45 + 20 + 8            # backward 3 makes δ2
    assert after[3] == b + 10 + 30 + 20 + 600                # ... and the late parameters
    b += 600
    assert during[6] == b + 10 + 15 + 3          # δ1 + x̄1 + ō_f: a recomputed forward adds nothing late
    assert after[-1] == b
    # without late bytes, the same plan is above it by them until they appear
    flat = [e.during for e in simulate(Chain(CHAIN.stages, input_bytes=51,
                                             param_bytes=1000), ops).timeline]
    assert flat[0] == during[0] + 650
    assert flat[1:4] == [d + 600 for d in during[1:4]]
    assert flat[4:] == during[4:]


def test_a_direct_backward_counts_its_own_transient():
    # stage 2's backward left to the engine holds 6 bytes less (δ2 freed once used)
    stages = list(CHAIN.stages)
    stages[1] = Stage("b", 10.0, 20.0, 20, 30, 5, 6, direct_backward_transient=-4)
    direct = Chain(stages, input_bytes=1, param_bytes=1000)
    store_all = ["forward_save 1", "forward_save 2", "forward_save 3", "backward 3",
                 "backward 2", "backward 1"]
    node, engine = simulate(CHAIN, store_all), simulate(direct, store_all)
    assert engine.timeline[4].during == node.timeline[4].during - 10 == 1001 + 45 + 20 + 10 - 4
    assert [e.after for e in engine.timeline] == [e.after for e in node.timeline]
    # stage 2 recomputed (run twice): the engine runs its backward all the same, ō_b applies
    recomputing = ["forward 1", "forward 2", "drop 1", "forward_save 3", "backward 3",
                   "drop 2", "forward_save 1", "forward_save 2", "backward 2", "backward 1"]
    node, engine = simulate(CHAIN, recomputing), simulate(direct, recomputing)
    assert [e.during for e in engine.timeline] == \
        [e.during - (10 if str(e.op) == "backward 2" else 0) for e in node.timeline]
