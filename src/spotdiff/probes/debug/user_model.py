"""The probe models' "user code": tiny forwards that every framework runs unchanged.

`ops` is the framework's namespace (see `OPS` in each *_probes.py): `log`, `mean` and `peek`.
Lines the probes look for carry a `# PROBE: <name>` marker; `marker_line(name)` finds them by
reading this file at run time, so no line number is written down anywhere.
"""

from __future__ import annotations

import linecache

PRINT_TAG = "spotdiff-probe:"
SEEN: list[dict] = []  # what `ops.peek` recorded at the print line, one entry per execution


def forward_print(ops, w, x):
    """A debugging print inside the forward; the next line records what the print saw."""
    h = x * w  # (B, 3)
    print(PRINT_TAG, h)  # PROBE: print
    SEEN.append(ops.peek(h))
    return ops.mean(h * h)


def forward_shape_bug(ops, w, x):
    """A shape bug: (B, 3) @ (2, 1) on the marked line."""
    h = x * 2.0  # (B, 3)
    y = h @ w[:2]  # PROBE: shape bug
    return ops.mean(y)


def forward_nan(ops, w, x):
    """log(-1): x is all -1 and w all 1, so the marked line produces NaN."""
    h = x * w  # (B, 3), every entry -1
    z = ops.log(h)  # PROBE: nan
    return ops.mean(z)


def marker_line(name: str) -> int:
    """The line number of `# PROBE: <name>` in this file, found by reading it."""
    linecache.checkcache(__file__)
    for number, line in enumerate(linecache.getlines(__file__), start=1):
        if line.rstrip().endswith(f"# PROBE: {name}"):
            return number
    raise LookupError(f"no '# PROBE: {name}' marker in {__file__}")
