"""Grad-mode decorators on generators and coroutines: the same program in torch and in ckpt
sees the same mode at every step of the generator's body and in its caller."""
import asyncio

import pytest
import torch

import ckpt

DECORATORS = {
    "no_grad()": lambda lib: lib.no_grad(),
    "no_grad": lambda lib: lib.no_grad,
    "enable_grad()": lambda lib: lib.enable_grad(),
    "set_grad_enabled(False)": lambda lib: lib.set_grad_enabled(False),
    "set_grad_enabled(True)": lambda lib: lib.set_grad_enabled(True),
    "inference_mode()": lambda lib: lib.inference_mode(),
    "inference_mode(False)": lambda lib: lib.inference_mode(False),
}


def generator_trace(lib, decorator, caller_mode):
    """Drive a decorated generator through next, send, throw, close and return; record the
    grad mode its body sees and the mode its caller sees after each step."""
    trace = []
    x = lib.ones(2, requires_grad=True)

    @decorator(lib)
    def body():
        trace.append(("start", lib.is_grad_enabled(), (x * 2).requires_grad))
        sent = yield 1
        trace.append(("sent", sent, lib.is_grad_enabled()))
        lib.set_grad_enabled(not lib.is_grad_enabled())  # does not leak into the next step
        try:
            yield 2
        except ValueError as e:
            trace.append(("thrown", str(e), lib.is_grad_enabled()))
        try:
            yield 3
        finally:
            trace.append(("finally", lib.is_grad_enabled()))

    def run(step):
        with lib.set_grad_enabled(caller_mode):
            out = step()
            trace.append(("caller", out, lib.is_grad_enabled()))

    g = body()
    run(lambda: next(g))
    run(lambda: g.send("a"))
    run(lambda: g.throw(ValueError("v")))
    run(lambda: g.close())
    trace.append(("after", lib.is_grad_enabled()))
    return trace


@pytest.mark.parametrize("caller_mode", [True, False])
@pytest.mark.parametrize("name", DECORATORS)
def test_decorated_generator_runs_each_step_in_the_mode_as_in_torch(name, caller_mode):
    expected = generator_trace(torch, DECORATORS[name], caller_mode)
    assert generator_trace(ckpt, DECORATORS[name], caller_mode) == expected


def delegating_trace(lib):
    """``yield from`` a decorated generator, its return value, and an error raised inside."""
    @lib.no_grad()
    def inner():
        yield lib.is_grad_enabled()
        return "done"

    @lib.no_grad()
    def failing():
        yield lib.is_grad_enabled()
        raise KeyError("inside")

    def outer():
        result = yield from inner()
        yield result, lib.is_grad_enabled()

    trace = list(outer())
    g = failing()
    trace.append(next(g))
    with pytest.raises(KeyError, match="inside"):
        next(g)
    trace.append(lib.is_grad_enabled())
    return trace


def test_delegation_return_value_and_errors_match_torch():
    assert delegating_trace(ckpt) == delegating_trace(torch) == [False, ("done", True), False, True]


def test_decorated_generator_is_still_a_generator_function():
    import inspect

    @ckpt.no_grad()
    def gen():
        """Doc."""
        yield 1

    assert inspect.isgeneratorfunction(gen) and gen.__name__ == "gen" and gen.__doc__ == "Doc."
    with pytest.raises(TypeError, match="just-started generator"):
        gen().send(1)  # Python's own error, as for the undecorated generator


def test_decorated_coroutine_runs_each_resumption_in_the_mode():
    """Two tasks interleave on one event loop; each sees its own mode at each resumption."""
    seen = {"no_grad": [], "plain": []}

    @ckpt.no_grad()
    async def without_grad():
        for _ in range(3):
            seen["no_grad"].append(ckpt.is_grad_enabled())
            await asyncio.sleep(0)
        return "value"

    async def plain():
        for _ in range(3):
            seen["plain"].append(ckpt.is_grad_enabled())
            await asyncio.sleep(0)

    async def main():
        return await asyncio.gather(without_grad(), plain())

    assert asyncio.run(main()) == ["value", None]
    assert seen == {"no_grad": [False] * 3, "plain": [True] * 3}
    assert ckpt.is_grad_enabled()


def test_decorated_coroutine_passes_on_cancellation():
    state = []

    @ckpt.enable_grad()
    async def waits():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            state.append(ckpt.is_grad_enabled())
            raise

    async def main():
        with ckpt.no_grad():
            task = asyncio.ensure_future(waits())
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            state.append(ckpt.is_grad_enabled())

    asyncio.run(main())
    assert state == [True, False]


def inference_trace(lib):
    """Both flags through nested modes, and in a generator decorated with inference_mode."""
    trace = [lib.is_inference_mode_enabled()]

    def record():
        trace.append((lib.is_inference_mode_enabled(), lib.is_grad_enabled()))

    with lib.inference_mode():
        record()
        with lib.inference_mode(False):
            record()
        with lib.no_grad():
            record()
        with lib.enable_grad():
            record()
    with lib.no_grad():
        record()
        with lib.inference_mode(False):
            record()

    @lib.inference_mode()
    def steps():
        for _ in range(2):
            record()
            yield

    for _ in steps():
        record()
    record()
    return trace


def test_is_inference_mode_enabled_as_in_torch():
    assert inference_trace(ckpt) == inference_trace(torch)
    assert inference_trace(ckpt)[1] == (True, False)
