"""The killable child every graph solver runs in (ckpt/planner/strategies/killable.py)."""
import os
import time

from ckpt.planner.strategies.killable import run_killable


def _noisy(send):        # as HiGHS's C++ printf does, on the file descriptor
    os.write(1, b"HighsMemoryAllocation::okResize fails with std::bad_alloc\n")
    send(("done", 1))


def test_what_the_child_prints_on_stdout_never_reaches_the_parents(capfd):
    r = run_killable(_noisy, (), time_limit=30)
    assert r.how == "done" and r.done == ("done", 1)
    assert capfd.readouterr().out == ""


def _flood(send):
    while True:
        send(("progress", time.monotonic()))
        time.sleep(0.01)


def test_the_limit_holds_while_messages_arrive_faster_than_they_are_handled():
    began = time.monotonic()
    r = run_killable(_flood, (), time_limit=0.5, on_message=lambda m: time.sleep(0.05),
                     grace=0.0)
    assert r.how == "killed" and time.monotonic() - began < 2.0
    asked = []
    r = run_killable(_flood, (), time_limit=30, on_message=lambda m: time.sleep(0.05),
                     stop=lambda: len(asked) > 3 or asked.append(1))
    assert r.how == "stopped" and r.seconds < 5.0


def _fails(send):
    raise ValueError("no such stage")


def _runs_out(send):
    raise MemoryError


def test_an_exception_in_the_child_ends_its_run_with_the_reason():
    r = run_killable(_fails, (), time_limit=30)
    assert (r.how, r.done, r.reason) == ("error", None, "ValueError: no such stage")
    r = run_killable(_runs_out, (), time_limit=30)
    assert (r.how, r.reason) == ("memory", "out of memory")
