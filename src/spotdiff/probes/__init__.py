"""Probes: measurements about the frameworks themselves rather than a task's training.

`debug/` measures debuggability (print, tracebacks, pdb, NaN tools, graph dumps) per framework
and mode, each outcome by running a probe in a child process.
"""
