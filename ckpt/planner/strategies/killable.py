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
    """How the child ended (``how``: "done" — it sent its final message, "stopped" — by
    ``stop()``, "killed" — at the time limit, "error" — it died first), its final message
    (``done``, None unless "done"), the wall ``seconds`` and the child's ``exitcode``.

    >>> ChildResult("killed", None, 60.0, -9).how
    'killed'
    """
    how: str
    done: tuple
    seconds: float
    exitcode: int


def _child(target, args, send, mem_limit):
    try:
        if mem_limit:
            import resource
            resource.setrlimit(resource.RLIMIT_AS, (mem_limit, mem_limit))
        target(send.send, *args)
    finally:
        send.close()


def run_killable(target, args, time_limit, mem_limit=None, on_message=None, stop=None,
                 grace=2.0):
    """Run ``target(send, *args)`` in a forked child (spawned where fork is missing) with at
    most ``mem_limit`` bytes of address space (None: no cap). The child sends tuples; the
    first whose first item is "done" ends the run, every other one goes to
    ``on_message(message)`` as it arrives. ``stop()`` is asked between messages (and every
    0.5 s): when it says so, the child gets 0.2 s to finish, then is killed. The child is
    killed ``grace`` seconds after ``time_limit`` at the latest. A "done" the child wrote
    before it ended wins over a stop or a kill; messages after the last one read are left
    out. Returns a ``ChildResult``.

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
    done, stopped = None, False
    deadline = t0 + time_limit + grace
    try:
        while done is None:
            if stop is not None and not recv.poll(0) and stop():
                stopped = True
                break
            if not recv.poll(max(0.0, min(0.5, deadline - time.monotonic()))):
                if time.monotonic() >= deadline:
                    break
                continue
            try:
                msg = recv.recv()
            except EOFError:
                break
            if msg[0] == "done":
                done = msg
            elif on_message is not None:
                on_message(msg)
    finally:          # the callbacks are the caller's code: the child goes whatever they do
        seconds = time.monotonic() - t0
        if stopped:   # the message stop() answered may also have ended the solve
            proc.join(0.2)
        if proc.is_alive():
            proc.kill()
        proc.join()
        try:
            while done is None and recv.poll(0):
                msg = recv.recv()
                done = msg if msg[0] == "done" else None
        except (EOFError, OSError):
            pass
        recv.close()
    how = ("done" if done is not None else "stopped" if stopped else
           "killed" if seconds >= time_limit else "error")
    return ChildResult(how, done, seconds, proc.exitcode)
