"""The planner's byte units live in ``ckpt.units`` (shared with the profiler, plots and CLI).

>>> format_size(parse_size("2KiB"))
'2.0 KiB'
"""
from ..units import MAX_BYTES, format_size, parse_size, printable

__all__ = ["parse_size", "format_size", "printable", "MAX_BYTES"]
