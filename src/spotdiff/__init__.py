"""spotdiff: run one deep-learning experiment in PyTorch, TensorFlow and JAX and show where they differ.

`spotdiff.run(...)` and `spotdiff.Results` are the Python API (see spotdiff.api); importing this
package imports no framework.
"""

from __future__ import annotations

from typing import Any

from spotdiff._version import __version__

__all__ = ["run", "Results", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("run", "Results"):
        from spotdiff import api

        return getattr(api, name)
    raise AttributeError(f"module 'spotdiff' has no attribute {name!r}")
