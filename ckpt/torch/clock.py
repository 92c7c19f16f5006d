"""How ``profile`` times an op: the clock, and the page faults taken out of what it reads.

On a CPU a step's time is its compute plus the minor page faults of fresh memory (glibc
gives freed heap back to the system and faults it in again, about 1.5 µs a fault here).
Which op faults depends on the heap's state, not on the stage: in the profiler's op order
one ResNet block's recomputation faulted in every repeat and looked 30% dearer than the
others. So an op costs its CPU time less its faults times the price of one.
"""
import statistics
import sys
import time

import torch

try:
    import resource
    _THREAD = resource.RUSAGE_THREAD
except (ImportError, AttributeError):      # not Linux: no per-thread fault count
    resource = _THREAD = None

__all__ = ["op_clock", "minor_faults", "fault_seconds"]


def op_clock():
    """Seconds by the clock CPU ops are timed with: the calling thread's CPU time when
    torch computes on that thread alone (``torch.get_num_threads() == 1``; the autograd
    engine runs CPU backward there too), so that time the machine gives to other processes
    is not counted; the wall clock otherwise.

    >>> t = op_clock(); sum(range(10000)) > 0 and op_clock() >= t
    True
    """
    return time.thread_time() if torch.get_num_threads() == 1 else time.perf_counter()


def minor_faults():
    """Minor page faults so far, of the calling thread when ``op_clock`` reads its CPU
    time, of the process when the wall clock (0 where the system does not say).

    >>> before = minor_faults(); fresh = torch.ones(1 << 24)   # 64 MiB, pages never used
    >>> minor_faults() > before or sys.platform != "linux"
    True
    """
    if _THREAD is None:
        return 0
    who = _THREAD if torch.get_num_threads() == 1 else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_minflt


def fault_seconds(mib=64, repeats=3):
    """Seconds of ``op_clock`` one minor page fault costs: filling ``mib`` MiB of fresh
    memory (above glibc's largest mmap threshold, 32 MiB: pages the system has not given
    yet) against filling it again; the median of ``repeats``. 0 where faults are not
    counted.

    >>> 0 <= fault_seconds(repeats=1) < 1e-3
    True
    """
    if _THREAD is None:
        return 0.0
    costs = []
    for _ in range(repeats):
        fresh = torch.empty(mib << 18)
        f0, t0 = minor_faults(), op_clock()
        fresh.fill_(1.0)
        f1, t1 = minor_faults(), op_clock()
        fresh.fill_(2.0)
        t2 = op_clock()
        del fresh
        if f1 > f0:
            costs.append(max(0.0, (t1 - t0) - (t2 - t1)) / (f1 - f0))
    return statistics.median(costs) if costs else 0.0
