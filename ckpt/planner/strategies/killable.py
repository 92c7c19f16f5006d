"""Run a solver in a child process that is killed when its wall-clock limit passes, with its
address space capped: HiGHS's own time limit does not hold on large models (the stage MILP
at n = 500; the keep-set relaxation at n = 1000 ran 2.5–6.8 s past a 3-s limit under load),
and a model too large for memory must fail alone, not take the planner with it.

>>> def work(send, x):
...     send(("progress", x))
...     send(("done", x * 2))
>>> seen = []
>>> r = run_killable(work, (21,), time_limit=30, on_message=seen.append)
>>> r.how, r.done, seen
('done', ('done', 42), [('progress', 21)])
"""
import multiprocessing
import os
import time
from typing import NamedTuple

__all__ = ["ChildResult", "run_killable"]


class ChildResult(NamedTuple):
    """How the child ended (``how``: "done" — it sent its final message, "memory" — out of
    memory, "error" — an exception or a death, "stopped" — by ``stop()``, "killed" — at
    the time limit), its final message (``done``, a tuple, None unless "done"), why it
    ended otherwise (``reason``), the wall ``seconds`` and the child's ``exitcode``.

    >>> ChildResult("killed", None, "killed at the wall-clock limit", 60.0, -9).how
    'killed'
    """
    how: str
    done: object
    reason: str
    seconds: float
    exitcode: int


def _child(target, args, send, mem_limit):
    """The child's life: stdout on /dev/null (HiGHS prints its allocation failures there
    whatever its options say, and a parent's ``--json`` must stay clean), the memory cap,
    ``target``; a MemoryError ends it as ("memory", ...) and any other exception as
    ("error", "Type: message")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    try:
        if mem_limit:
            import resource
            resource.setrlimit(resource.RLIMIT_AS, (mem_limit, mem_limit))
        target(send.send, *args)
    except MemoryError:
        send.send(("memory", "out of memory"))
    except Exception as e:       # reported to the parent, which falls back to what it has
        send.send(("error", f"{type(e).__name__}: {e}"))
    finally:
        send.close()


_LAST = ("done", "memory", "error")    # the kinds of message that end a child's run


def run_killable(target, args, time_limit, mem_limit=None, on_message=None, stop=None,
                 grace=2.0):
    """Run ``target(send, *args)`` in a forked child (spawned where fork is missing) with at
    most ``mem_limit`` bytes of address space (None: no cap). The child sends tuples; the
    first whose first item is "done" ends the run, every other one goes to
    ``on_message(message)`` as it arrives. ``stop()`` is asked after each message and each
    quiet 0.5 s: when it says so, the child gets 0.2 s to finish, then is killed. The child is
    killed ``grace`` seconds after ``time_limit`` at the latest. A "done" the child wrote
    before it ended wins over a stop or a kill; messages after the last one read are left
    out. A "memory" or "error" message (``_child``'s, for an exception) ends the run too.
    Returns a ``ChildResult``.

    >>> import time
    >>> run_killable(lambda send: time.sleep(30), (), time_limit=0.5, grace=0.0).how
    'killed'
    """
    ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    recv, send = ctx.Pipe(duplex=False)
    t0 = time.monotonic()
    proc = ctx.Process(target=_child, daemon=True, args=(target, args, send, mem_limit))
    proc.start()
    send.close()
    last, stopped = None, False
    deadline = t0 + time_limit + grace
    try:
        while last is None and time.monotonic() < deadline:
            if recv.poll(max(0.0, min(0.5, deadline - time.monotonic()))):
                try:
                    msg = recv.recv()
                except EOFError:
                    proc.join(0.5)          # its exit code, if it is dying on its own
                    break
                if msg[0] in _LAST:
                    last = msg
                    break
                if on_message is not None:
                    on_message(msg)
            if stop is not None and stop():     # after each message, and each quiet 0.5 s
                stopped = True
                break
    finally:          # the callbacks are the caller's code: the child goes whatever they do
        seconds = time.monotonic() - t0
        if stopped:   # the message stop() answered may also have ended the solve
            proc.join(0.2)
        if proc.is_alive():
            proc.kill()
        proc.join()
        try:
            while last is None and recv.poll(0):
                msg = recv.recv()
                last = msg if msg[0] in _LAST else None
        except (EOFError, OSError):
            pass
        recv.close()
    if last is not None:
        return ChildResult(last[0], last if last[0] == "done" else None,
                           "" if last[0] == "done" else last[1], seconds, proc.exitcode)
    how = "stopped" if stopped else "killed" if seconds >= time_limit else "error"
    reason = {"stopped": "stopped: stop() said so", "killed": "killed at the wall-clock limit",
              "error": f"the solver process died (exit code {proc.exitcode})"}[how]
    return ChildResult(how, None, reason, seconds, proc.exitcode)
