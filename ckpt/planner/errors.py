"""The planner's exceptions: each names what is wrong and what would be right.

>>> issubclass(BudgetError, ValueError), issubclass(InvalidPlanError, PlannerError)
(True, True)
"""

__all__ = ["PlannerError", "ChainError", "ChainFormatError", "BudgetError", "InvalidPlanError",
           "GraphError", "GraphFormatError", "ExecutionError", "PlanMismatchError"]


class PlannerError(Exception):
    """Base class of every error the planner raises on purpose.

    >>> isinstance(PlannerError("x"), Exception)
    True
    """


class ChainError(PlannerError, ValueError):
    """A chain whose numbers are impossible (negative bytes, x̄ smaller than the output, ...).

    >>> str(ChainError("stage 2: forward_cost must be >= 0"))
    'stage 2: forward_cost must be >= 0'
    """


class ChainFormatError(ChainError):
    """Malformed chain or plan JSON; ``line``/``column`` locate syntax errors (1-based).

    >>> e = ChainFormatError("boom", line=3, column=7); (e.line, e.column)
    (3, 7)
    """

    def __init__(self, message, line=None, column=None):
        super().__init__(message)
        self.line, self.column = line, column


class BudgetError(PlannerError, ValueError):
    """A memory budget that no plan (or not the asked strategy) can meet.

    ``budget`` and ``minimum`` are in bytes; ``minimum`` is the smallest budget that works
    (for the chain, or for the strategy when ``strategy`` is set).

    >>> e = BudgetError("too small", budget=10, minimum=12); (e.budget, e.minimum)
    (10, 12)
    """

    def __init__(self, message, budget=None, minimum=None, strategy=None):
        super().__init__(message)
        self.budget, self.minimum, self.strategy = budget, minimum, strategy


class InvalidPlanError(PlannerError, ValueError):
    """An op list the simulator refuses; ``step`` is the 0-based index of the failing op
    (``len(ops)`` for a problem found at the end), ``op`` the op (or None), ``reason`` why.

    >>> e = InvalidPlanError(4, None, "stage 2 was never backpropagated")
    >>> str(e), e.step
    ('step 4 (end of plan): stage 2 was never backpropagated', 4)
    """

    def __init__(self, step, op, reason):
        where = f"step {step} ({op})" if op is not None else f"step {step} (end of plan)"
        super().__init__(f"{where}: {reason}")
        self.step, self.op, self.reason = step, op, reason


class GraphError(PlannerError, ValueError):
    """A graph whose numbers or edges are impossible (a cycle, an unknown input, bytes < 0).

    >>> str(GraphError("node 'a': output_bytes must be >= 0"))
    "node 'a': output_bytes must be >= 0"
    """


class GraphFormatError(GraphError):
    """Malformed graph JSON; ``line``/``column`` locate syntax errors (1-based).

    >>> GraphFormatError("boom", line=2, column=5).line
    2
    """

    def __init__(self, message, line=None, column=None):
        super().__init__(message)
        self.line, self.column = line, column


class ExecutionError(PlannerError):
    """A plan cannot run on this model (stage count, model type, loss).

    >>> issubclass(ExecutionError, PlannerError)
    True
    """


class PlanMismatchError(ExecutionError):
    """The model and input are not those the plan's chain was profiled on: a stage's output
    (or the input), what a stage keeps for backward, or the parameters and their gradients
    have another size than the chain says, so the plan's memory prediction
    does not hold. Nothing is left changed: the RNG and module buffers (BatchNorm
    statistics) are put back as they were, parameter gradients are untouched.

    >>> issubclass(PlanMismatchError, ExecutionError)
    True
    """
