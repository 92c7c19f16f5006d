"""The ``ckpt`` command line (also ``python -m ckpt``): plan what to keep and what to recompute
under a memory budget, from a built-in model, a chain JSON file, or your own model.

    ckpt demo                                   every strategy on a built-in model, plots
    ckpt profile --list                         the built-in models
    ckpt profile resnet -o chain.json           a model as a chain JSON file
    ckpt profile my_model.py:make -o chain.json your own ckpt model (FACTORY() returns
                                                (model, sample, loss_fn))
    ckpt plan --torch net.py:make --budget 1GiB a PyTorch model (ckpt.torch)
    ckpt plan chain.json --budget 600MiB        the optimal plan as a table (--json: JSON)
    ckpt sweep resnet --budgets 8 --plot t.png  trade-off curves of every strategy
    ckpt simulate chain.json plan.json          replay a plan: validity, peak, compute
    ckpt graph resnet -o graph.dot              the graph as Graphviz DOT (or .png)
    ckpt sweep unet --plot unet.png             a graph of ops (the dag_* strategies); also
                                                graph JSON files, --graph MODEL

Exit status: 0 on success, 2 for a mistake in the command or its inputs (one line on stderr
says what is wrong and what would be right; never a traceback), 1 when ``simulate`` finds
the plan invalid. Sizes are parsed and printed with ``ckpt.planner``'s units ("512MiB",
"2GB", or bytes).

A MODEL is a runnable built-in model (``ckpt.models``: ``mlp-run``, ``resnet-run``,
``transformer-run``), profiled by running it (``ckpt.planner.profile``) and executed by
``ckpt demo`` (``ckpt.planner.execute``), a chain of the planner zoo at real sizes, whose
costs come from layer formulas, or a user's factory (``FILE.py:FACTORY`` or
``MODULE:FACTORY``; ``--torch`` for a PyTorch model, run by ``ckpt.torch``).

The modules: ``inputs`` (files, sizes, names), ``load`` (a user's factory), ``sources``
(SOURCE -> chain, plan -> measurement), ``output`` (escaping, safe writes, progress),
``commands`` (the subcommands) and this one (the parser and ``main``).
"""
import argparse
import os
import sys

from .. import models
from ..planner import graph_zoo, zoo
from ..planner.errors import PlannerError
from .commands import (budget_range, cmd_demo, cmd_graph, cmd_plan, cmd_profile,
                       cmd_simulate, cmd_sweep, parse_budgets)
from .inputs import EXIT_OK, EXIT_USAGE, STRATEGY_ORDER, UsageError
from .output import OutputError, Progress, Stdout, printable
from .sources import model_names

__all__ = ["main", "build_parser", "UsageError", "STRATEGY_ORDER", "model_names"]

# the names the tests and older callers use
_Progress, _parse_budgets, _budget_range = Progress, parse_budgets, budget_range


# ---- the parser ---------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) that point to the subcommand's --help."""

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")

    def _print_message(self, message, file=None):
        if message and file is sys.stdout:    # argparse itself ignores a failed write
            Stdout(file).write(message)
        else:
            super()._print_message(message, file)


_EXAMPLES = {
    "profile": """examples:
  ckpt profile --list                       the built-in models
  ckpt profile resnet-run -o chain.json     run a residual conv net: measured chain as JSON
  ckpt profile resnet -o resnet.json        a real-size chain from layer formulas
  ckpt profile transformer --batch 4        print the chain JSON at batch size 4
  ckpt profile my_model.py:make -o c.json   your own ckpt.nn.Sequential, run and measured
  ckpt profile --torch my_net.py:make       a PyTorch model (needs torch), run and measured

MODEL-run models are ckpt.nn networks, profiled by running them (times in seconds, bytes
measured); the others are the planner zoo's formula chains (FLOPs, bytes), nothing run.
FILE.py:FACTORY (or MODULE:FACTORY): FACTORY() returns (model, sample, loss_fn) with a
ckpt.nn.Sequential model (loss_fn may be None: the sum of the output); with --torch a
torch.nn.Module, and optionally a 4th item, stages (default "auto")""",
    "plan": """examples:
  ckpt plan resnet --budget 600MiB                   optimal plan as a table
  ckpt plan chain.json --budget 2GB --strategy revolve
  ckpt plan resnet --budget 600MiB --json -o plan.json
  ckpt plan mlp --budget 60MiB --explain             plus op-by-op memory
  ckpt plan my_model.py:make --budget 20MiB          your own model (FACTORY() returns
                                                     (model, sample, loss_fn))
  ckpt plan --torch my_net.py:make --budget 1GiB     a PyTorch model
  ckpt plan unet --budget 300MiB --json              a graph zoo model, dag_optimal
  ckpt plan graph.json -s dag_lp_rounding -o p.json  a ckpt.graph or node-link graph file
  ckpt plan transformer-run --graph --batch 2        a runnable model as a graph of ops
  ckpt plan my_unet.py:make --graph --budget 7MiB    your own model of any shape (skips,
                                                     residuals) as a graph of ops

budgets: bytes or a size with a unit (512MiB, 2GiB, 1.5GB); below the least feasible peak
the error says what the minimum is""",
    "sweep": """examples:
  ckpt sweep resnet                                  8 budgets, every strategy
  ckpt sweep resnet --budgets 16 --plot tradeoff.png
  ckpt sweep chain.json --strategies optimal,revolve,sqrt --budgets 500MiB,700MiB
  ckpt sweep transformer --csv > sweep.csv
  ckpt sweep --torch my_net.py:make --budgets 6
  ckpt sweep unet --budgets 6 --plot unet.png        every graph strategy on a graph

--budgets N (a bare integer) spreads N budgets from the least feasible peak to store-all's
peak; otherwise give sizes (comma or space separated)""",
    "simulate": """examples:
  ckpt simulate chain.json plan.json
  ckpt simulate resnet plan.json --json

exit status: 0 when the plan is valid, 1 when it is not (the reason is printed), 2 for
unreadable input""",
    "graph": """examples:
  ckpt graph resnet-run --batch 2 -o g.dot the recorded autograd graph of one forward pass
  ckpt graph resnet                        a chain's stages as Graphviz DOT on stdout
  ckpt graph chain.json -o graph.dot       (render with: dot -Tpng graph.dot -o graph.png)
  ckpt graph mlp-run -o graph.png          drawn with networkx + matplotlib""",
    "demo": """examples:
  ckpt demo                                a runnable MLP: predicted vs measured, files in a temp dir
  ckpt demo --model resnet-run             a residual conv net, also run and measured
  ckpt demo --model resnet                 the real-size ResNet-like chain (planned only)
  ckpt demo --model transformer --budget 2GiB -o demo/
  ckpt demo --model chain.json             a chain file: predictions only
  ckpt demo --model my_model.py:make       your own ckpt model, planned, run and measured
  ckpt demo --torch my_net.py:make --json  a PyTorch model; the table as JSON""",
}


def build_parser():
    """The ``ckpt`` argument parser (subcommands: demo, profile, plan, sweep, simulate,
    graph).

    >>> build_parser().parse_args(["plan", "mlp", "--budget", "60MiB"]).strategy
    'optimal'
    """
    from .. import __version__
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog="ckpt", formatter_class=fmt,
                     description="Plan activation checkpointing under a memory budget: which "
                                 "activations to keep, which to recompute.",
                     epilog="run 'ckpt COMMAND --help' for a command's options and examples")
    parser.add_argument("--version", action="version", version=f"ckpt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    model_list = ", ".join(model_names())

    def add(name, help_text, func):
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=fmt,
                           epilog=_EXAMPLES[name])
        p.set_defaults(func=func)
        return p

    torch_help = ("a PyTorch model, run by ckpt.torch: FILE.py:FACTORY or MODULE:FACTORY, "
                  "FACTORY() returning (model, sample, loss_fn) or (model, sample, loss_fn, "
                  "stages); needs torch (pip install \"ckpt[torch]\")")
    factory = ("FILE.py:FACTORY or MODULE:FACTORY (your ckpt.nn.Sequential: FACTORY() returns "
               "(model, sample, loss_fn))")

    def add_torch(p):
        p.add_argument("--torch", metavar="MODULE_OR_FILE:FACTORY", help=torch_help)

    def add_graph(p):
        p.add_argument("--graph", action="store_true",
                       help="plan SOURCE as a graph of ops (dag_* strategies): a graph zoo "
                            f"model ({', '.join(sorted(graph_zoo.NAMES))}; unet, densenet, "
                            "resnet50 and random_layered are graphs without --graph), a "
                            "runnable model or your FILE.py:FACTORY (a ckpt model of any "
                            "shape), recorded with profile_graph; graph JSON files "
                            "(ckpt.graph or node-link) are graphs anyway")
        p.add_argument("--time-limit", type=float, default=60.0, metavar="SECONDS",
                       help="wall-clock limit of dag_optimal, dag_lp_rounding and dag_greedy "
                            "(default 60)")

    p = add("demo", "every strategy on a model at a budget: predicted vs measured, plots",
            cmd_demo)
    p.add_argument("--model", default=None,
                   help=f"built-in model: {', '.join(models.NAMES)} (profiled, planned and run: "
                        f"predicted vs measured) or one of {', '.join(sorted(zoo.NAMES))} "
                        f"(planned only); a chain JSON file (planned only); or {factory}; "
                        "default mlp-run")
    add_torch(p)
    p.add_argument("--budget", help="memory budget (default: 35%% of the way from the least "
                                    "feasible peak to store-all's)")
    p.add_argument("--batch", type=int, help="batch size of a built-in model")
    p.add_argument("-o", "--output-dir", help="where to write the PNGs (default: a new "
                                              "temporary directory)")
    p.add_argument("--json", action="store_true", help="print the results as JSON: the "
                   "chain, and per strategy the predicted and measured peak, overhead, fits")

    p = add("profile", "a model as a chain JSON (run and measured, or from formulas)",
            cmd_profile)
    p.add_argument("model", nargs="?", metavar="MODEL",
                   help=f"one of {model_list}; or {factory}")
    add_torch(p)
    p.add_argument("--list", action="store_true", help="list the built-in models")
    p.add_argument("--batch", type=int, help="batch size of a built-in model")
    p.add_argument("-o", "--output", metavar="CHAIN.json", help="write the chain here "
                   "(default: print it)")

    src = f"a chain JSON file, a built-in model ({model_list}), or {factory}"
    p = add("plan", "the plan of a strategy under a budget", cmd_plan)
    p.add_argument("source", nargs="?", metavar="CHAIN.json|MODEL", help=src)
    add_torch(p)
    p.add_argument("--budget", "-b", help="memory budget, e.g. 512MiB (default: none)")
    p.add_argument("--strategy", "-s", default="optimal",
                   help=f"one of {', '.join(STRATEGY_ORDER)} (default optimal)")
    p.add_argument("--batch", type=int, help="batch size of a built-in model")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("-o", "--output", metavar="PLAN.json", help="also write the plan JSON here")
    p.add_argument("--explain", action="store_true", help="also print every op with the "
                                                          "memory during and after it")
    p.add_argument("--plot", metavar="OUT.png", help="draw the schedule here (a chain: stage x "
                   "time; a graph: node x stage, kept vs recomputed)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress line for a graph's solve (shown only on a terminal anyway)")
    add_graph(p)

    p = add("sweep", "trade-off curves: every strategy at several budgets", cmd_sweep)
    p.add_argument("source", nargs="?", metavar="CHAIN.json|MODEL", help=src)
    add_torch(p)
    p.add_argument("--strategies", nargs="+", metavar="NAME",
                   help="strategies (comma or space separated; default: all)")
    p.add_argument("--budgets", nargs="+", metavar="N|SIZE",
                   help="a count (default 8) or a list of sizes")
    p.add_argument("--batch", type=int, help="batch size of a built-in model")
    p.add_argument("--plot", metavar="OUT.png", help="draw the trade-off plot here")
    fmt_group = p.add_mutually_exclusive_group()
    fmt_group.add_argument("--json", action="store_true", help="print the rows as JSON")
    fmt_group.add_argument("--csv", action="store_true", help="print the rows as CSV")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar (it is shown only on a terminal anyway)")
    add_graph(p)

    p = add("simulate", "replay a plan on a chain: validity, peak, compute", cmd_simulate)
    p.add_argument("chain", metavar="CHAIN.json", help=src)
    p.add_argument("plan", metavar="PLAN.json", help="a plan JSON file (ckpt plan -o)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = add("graph", "the graph of a model or chain (Graphviz DOT or a drawing)", cmd_graph)
    p.add_argument("source", metavar="MODEL|CHAIN.json", help=src)
    p.add_argument("--batch", type=int, help="batch size of a built-in model")
    p.add_argument("-o", "--output", metavar="OUT", help=".dot/.gv for DOT text, "
                   ".png/.svg/.pdf for a drawing (default: DOT on stdout)")
    return parser


_VALUE_OPTIONS = ("--budget", "-b", "--budgets")


def _join_negative_values(argv):
    """``--budget -5MiB`` would read as an unknown option; pass it as ``--budget=-5MiB`` so
    the budget check can say what is wrong with it."""
    out, k = [], 0
    while k < len(argv):
        tok = argv[k]
        nxt = argv[k + 1] if k + 1 < len(argv) else None
        if tok in _VALUE_OPTIONS and nxt and nxt.startswith("-") and nxt[1:2].isdigit():
            out.append(f"{tok}={nxt}")
            k += 2
            continue
        out.append(tok)
        k += 1
    return out


def _quiet_stdout():
    """Point the stdout file descriptor at /dev/null, so the interpreter's last flush of
    what could not be written (a closed pipe, a full disk) neither fails nor prints."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _error(prog, msg):
    msg = printable(" ".join(str(msg).split("\n")))
    try:
        sys.stderr.write(f"{prog}: error: {msg}\n")
    except (OSError, ValueError):
        pass
    return EXIT_USAGE


def main(argv=None):
    """Run the ``ckpt`` command line; returns the exit status.

    >>> main(["plan", "uniform", "--budget", "1KiB"])
    2
    """
    argv = _join_negative_values(list(sys.argv[1:] if argv is None else argv))
    prog, args = "ckpt", None
    if argv and argv[0] in _EXAMPLES:
        prog = f"ckpt {argv[0]}"
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:
            if e.code in (0, None):     # --help, --version: what they wrote must arrive
                Stdout(sys.stdout).flush()
            raise
        if args.command is None:
            raise UsageError("choose a command: demo, profile, plan, sweep, simulate, graph "
                             "(see 'ckpt --help')")
        prog = f"ckpt {args.command}"
        out = Stdout(sys.stdout)
        status = args.func(args, out)
        out.flush()
        return status
    except (UsageError, PlannerError) as e:
        return _error(prog, str(e).replace("(see 'ckpt --help')", f"(see '{prog} --help')"))
    except OutputError as e:  # e.g. stdout is /dev/full
        _quiet_stdout()
        return _error(prog, e)
    except MemoryError as e:  # e.g. a runnable model at a huge --batch
        batch = getattr(args, "batch", None)
        hint = f" at --batch {batch}" if batch is not None else ""
        detail = f" ({' '.join(str(e).split())})" if str(e) else ""
        return _error(prog, f"not enough memory to build or run the model{hint}{detail}; "
                            "try a smaller --batch")
    except BrokenPipeError:  # e.g. `ckpt profile resnet | head`
        _quiet_stdout()
        return EXIT_OK
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
