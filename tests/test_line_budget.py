"""The package stays within a line budget, as tinygrad checks its own: lines of ``ckpt/``
that hold code (docstrings included), blank lines and comment-only lines left out, counted
with Python's tokenizer. ``.ci/run`` prints the count; raise ``BUDGET`` in the change that
needs it, and say why.

    python tests/test_line_budget.py      # prints the count and the budget
"""
import io
import pathlib
import tokenize

ROOT = pathlib.Path(__file__).resolve().parent.parent / "ckpt"
# 19,946 when set (issue 13), plus about 3% for work merging beside it; plus 590 for issue
# 14's torch API (custom Function's mark_dirty/setup_context/once_differentiable, gradcheck's
# keywords, device= and out= on the factories, grad-mode decorators on generators); plus
# 1,150 for issue 17's graph edge (op_trace, graph_runner, graph_profile, graph_execute:
# profile_graph and the op-level executor of graph plans; cli/graphs.py); plus 700 for
# issue 17's solver back end (highspy with a warm start, dag_greedy) and issue 14's engine and
# checkpoint slice (early stop, context_fn, hooks as torch fires them, the saved-tensor hook
# API), merged together at 22,966; plus 34 for issue 14's Tensor.register_post_accumulate_grad_hook
# (the method and its runnable example, the engine running the hooks after accumulation and
# torch's checks of what a hook returns); plus 148 for issue 17's graph plan picture
# (plot/graph_schedules.py: graph_schedule and its matrix; ckpt plan --plot); plus 68 for
# issue 14's views (in place through a view of a graph-less tensor gives the base history,
# retain_grad follows an in-place write, writes into expanded tensors, del x.grad); plus 150
# for issue 17's model edge (in-place writes traced as their out-of-place ops, BatchNorm in
# training mode on graph plans, ckpt plan|sweep --graph FILE.py:FACTORY); plus 40 for issue
# 12's DP speed (optimal's reach_depth and its row skipping, slices for first/sat); plus 990
# for issue 14's missing API and points 11-12 (narrow/select/repeat/prod/median/var_mean/mm,
# the in-place unary ops and initialisers, ckpt.save/load, grad_fn._saved_*, torch's safety
# checks, detect_anomaly, save_on_cpu, allow_mutation_on_saved_tensors, module backward hooks,
# selective checkpointing); plus 360 for issue 14's port gaps (reentrant checkpoint,
# isclose/allclose, diagonal, Variable and queue_callback, hook order, InplaceFunction, legacy
# constructors, pickling, torch's phrases); plus 195 for issue 17's solver scale (dag_lazy: peak
# rows and memory rows added per stage; free-once rows; incumbents and bounds streamed from the
# killable solver process); plus 90 for issue 13's core speed (_attach's and the engine's
# unrolled cases for one or two inputs and saved values, numbers as cached 0-d arrays) and
# issue 14's point 7 (.grad as torch keeps it); plus 235 for issue 14's port (inference
# tensors as torch has them, transpose_, resize_, Tensor.new*, bernoulli, out= for add/mul,
# unsafe_split, eq_ and the other in-place comparisons, gradcheck's deprecated Jacobian
# helpers); plus 10 for issue 11's FSDP2 support (refuse_sharded: profile and execute refuse
# DTensors, PlannedModule accepts them); plus 60 for issue 14's port (the non-leaf .grad
# warning, Function() warning and vmap defaults, strict jvp's messages, gradcheck without
# differentiable outputs or with value-dependent shapes); plus 131 for issue 14's port of
# saved tensors (allow_mutation_on_saved_tensors cloning on the first write with torch's
# bookkeeping, one checkpoint recomputation per backward pass, the hook stack restored after a
# pass, autograd.SavedTensor, module full hooks as post-hooks); plus 255 for issue 14's port-a
# (anomaly mode's NaN check for every node and parents' stacks, custom Function jvp checks,
# gradcheck's undefined-gradient check as torch's, as_strided and Tensor.storage/stride,
# make_dual's tangent layout, batched expand/sum_to, random ops refused in a vectorized pass;
# 7 more where they merged); plus 160 for issue 17's bound (dag_keep_bound: the keep-set
# relaxation, its bound and keep set in dag_optimal; the MILP stopped at a target cost); plus
# 50 for issue 11's cost model (ckpt/torch/clock.py: ops timed by the thread's CPU time less
# their page faults) plus 28: the headroom each of this round's branches used on its own,
# merged together; plus 661 for issue 14's port (port-b, its as_strided merged into port-a's:
# unbind/split/var_mean as one multi- output node, torch's view marks and messages for writes
# into views, gather/scatter_add/scatter_reduce/index_reduce, as_strided and the in-place view
# ops, strides and memory formats, set_, isin/signbit/nanmedian, Tensor._backward_hooks,
# nn.InstanceNorm1d/2d/3d); plus 40 for issue 13's ckpt/autograd/op_calls.py (one way to
# observe op calls, without replacing functions, for the profiler and op_trace; both lost
# their own code for it)
# plus 28: the headroom core-speed and prof-trace used on their own, merged
# plus 12: optimal's schedules for budgets a few slots higher on short chains (slot rounding
# missed a plan that fits; issue 11's ResNet goal)
# plus 6: a stage's RNG state shared with the previous stage's while the generator has not
# moved (ckpt.torch faulted ~2x torch's pages on torch's own schedule; issue 11's goal)
# plus 30: dag_lazy's round control (every incumbent replayed; a stalled cold round, or one
# with no schedule yet, ended; a warm round restarted from a schedule with half its start's
# overhead), solve_milp's on_incumbent and stop: the U-Net at 0.6 proven in 60 s, at 0.5 a
# schedule where there was none (issue 17); the solver child killed whatever the callbacks do
# plus 16: a review's fixes — solve_milp reads what the child sent before it was stopped (a
# solve that ended on the very solution stop() answered reports its own end), a round's last
# solution replayed once, a stalled round with nothing new to add not repeated, RNG states
# shared only between the same devices; and the tanh and sigmoid rules' 0-d ones
# plus 18: PlannedModule runs an explicit list of stages (compiled blocks, say) in every mode,
# not the model's forward (runner.run_in_order, with its docstring example), sharing the
# step's way of calling a listed stage and its error for a call without an input (+4)
# plus 24: graph strategies sqrt and greedy (Chen et al.'s rules over the cut points) through
# chain_baseline, which takes the chain strategy; its replays memoized (issue 17)
# plus 24: a graph file told from a chain by its content (``nodes`` without ``stages``), and
# its schema errors shown as the planner words them, not swallowed into a chain's (issue 17)
# plus 29: dag_highs.quiet_highs, every Highs made with fd 1 on /dev/null (HiGHS's banner
# broke `ckpt plan --json`'s stdout; issue 17)
# plus 100: long graph solves show progress on a terminal (issue 17): dag_optimal's
# progress(objective, bound) through plan_graph, solve_lazy and solve_milp's on_bound
# (BestSoFar), and the CLI's line for it in ckpt plan and ckpt sweep (solver_line, show_on)
# plus 89: strategies/killable.py, one killable child for every solver (the stage MILP moved
# onto it, and the keep-set bound, whose HiGHS limit ran 2.5-6.8 s late at n = 1000, with
# what it reported before a kill, and its mem_limit, +1); graph sweeps skip the strategies that
# cut the forward
# plus 17: the review's fixes — the killable child's stdout on /dev/null and its exceptions
# reported with their reason, the cut-point strategies' error giving the least peak they reach
# plus 3: ckpt plan --no-progress, as ckpt sweep has
# plus 319: issue 11's compiled plans (ckpt/torch/compiled.py: block_checkpoint_plan and
# block_checkpoint_min_memory over the sets of checkpointed blocks, the lowering to
# torch.utils.checkpoint inside one torch.compile graph; plan/PlannedModule's compile=, checked;
# a deep copy compiling its own step; forwards put back as found);
# ckpt's front reaches torch's compiled points on the ResNet only through it
# plus 7: units.format_size_exact ("3.0 MiB (3145733 bytes)"), one formatter for the
# planner's budget messages and the compiled plans' (the hook's read found two copies);
# min_memory replays again only the plans at the least peak
# plus 62: issue 13's leaf accumulation as an array rule (autograd/accumulate.py, the
# accumulator's vjp; hooks on a leaf mark its accumulator), the engine's hooked path kept
# plus 8: a .grad viewing a product nothing else holds adds in place; store_all_compute
# summed in the simulator's order (a plan recomputing nothing matches it to the bit)
# plus 13: the engine's un-broadcast of a bias's gradient over leading dims without the
# general path, mean as np.mean computes it without its wrapper (the MLP step at batch 2,
# width 4: 342 -> 303 µs)
# plus 18: the review's fixes — the first .grad a copy where no count can tell who holds the
# gradient (a hook kept it, a Tensor pass, the accumulator called directly), the reference
# counts the engine compares against measured at import on this interpreter
# minus 1: the bias fast path's cached axis tuples dropped (no measurable cost)
# plus 37: the engine hands a leaf its one gradient from the pass loop (no round trip
# through the ready stack), a first .grad set without re-checking what the engine checked,
# the gradient of a mean or sum of all elements filled or spread in one numpy call
# (the MLP step at batch 2, width 4: 314 -> 290 µs)
# plus 6: w.mT's gradient transposed without the op's checks, x.data = (the same array) a
# no-op, relu's rule a function rather than a lambda made per call (290 -> 281 µs)
# plus 12: relu's gradient selects as torch's threshold_backward (a NaN output passes the
# gradient, a dead unit gives 0 even for an infinite gradient), by an integer product
# plus 17: an empty dim ([] or ()) reduces every dim in sum, mean, amax, var and std, as in
# torch (it reduced none); `over` keeps the internal reductions over no axes reducing none
# plus 23: a 0-d tensor's dim 0 or -1 reduces nothing (numpy's AxisError before), a dim named
# twice refused, std its own node (StdBackward0) with torch's 0 gradient where it is 0 (NaN)
# plus 14: x.t() its own view op with torch's TBackward0 (it returned x itself below 2
# dims and above), sign recorded with its zero gradient (SignBackward0)
# plus 24 (the review's fixes): a 0-d transpose passes batched gradients on; a mean of no
# elements backpropagates, divided as torch divides; var/std read a bool as unbiased, refuse
# integers, sum float16 in float32; sign's values as torch's; a leaf's .grad keeps the graph's dtype
# plus 34 (the second review's fixes): every hook's replacement gradient checked as torch checks
# it (dtype, size, count), a directly called accumulator's size checked, a float16 mean's
# gradient divided in float32, bools among a reduction's dims refused
# plus 2: var's rule in torch's order (the scale times g first), split into _scale and _centered
# plus 18: relu's rule recorded as torch's ThresholdBackwardBackward0 under create_graph (the
# first-order gradient depends on relu's output with a zero derivative)
# plus 3: one _zeros_like for sign's and ThresholdBackwardBackward0's zero gradients (the
# latter shaped as the gradient, batch dims included)
BUDGET = 27718
_NOT_CODE = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
             tokenize.ENCODING, tokenize.ENDMARKER}


def code_lines(source):
    """The number of lines of ``source`` that hold a token other than a comment (a string
    spanning several lines counts each of them).

    >>> code_lines("x = 1\\n\\n# a comment\\ny = '''a\\nb'''  # trailing\\n")
    3
    """
    lines = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in _NOT_CODE:
            lines.update(range(tok.start[0], tok.end[0] + 1))
    return len(lines)


def package_lines(root=ROOT):
    """``{path relative to root: code lines}`` of every ``.py`` file under ``root``."""
    return {str(p.relative_to(root)): code_lines(p.read_text(encoding="utf-8"))
            for p in sorted(root.rglob("*.py"))}


def test_the_counter_skips_blank_and_comment_lines():
    assert code_lines("# only a comment\n\n   \n") == 0
    assert code_lines("def f():\n    # why\n    return 1\n") == 2
    assert code_lines('s = """\n\nthree lines"""\n') == 3


def test_ckpt_is_within_its_line_budget():
    counts = package_lines()
    total = sum(counts.values())
    largest = sorted(counts.items(), key=lambda kv: -kv[1])[:5]
    assert total <= BUDGET, (
        f"ckpt/ has {total} lines of code, {total - BUDGET} over its budget of {BUDGET}; "
        f"the largest files: {', '.join(f'{p} ({n})' for p, n in largest)}. Remove what can "
        "go, or raise BUDGET in tests/test_line_budget.py saying why")


if __name__ == "__main__":
    print(f"ckpt/: {sum(package_lines().values())} lines of code (budget {BUDGET})")
