"""Run folders: every run gets a folder of its own, and results in one are replaced only on request.

The default folder is `runs/<timestamp>`, with `-2`, `-3`, ... when that name is taken (two runs
started in the same second); it is created with an exclusive `mkdir`, so two runs can never both
get it. `--out DIR` that already holds a run (results.json or cell folders) is refused unless
`overwrite` is set; then the old folder is removed whole before the new run starts, so old and new
results never mix.
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from pathlib import Path

from spotdiff.errors import UserError

DEFAULT_ROOT = Path("runs")
RESULT_ENTRIES = ("results.json", "cells")  # what makes a folder a run's: never silently reused


def holds_results(folder: Path) -> bool:
    """Whether `folder` already holds (part of) a run."""
    return any((Path(folder) / name).exists() for name in RESULT_ENTRIES)


def _why(error: OSError) -> str:
    return error.strerror or str(error)


def claim_default(root: Path = DEFAULT_ROOT) -> Path:
    """A new, empty `root/<timestamp>[-N]` that no other run has, created here."""
    base = Path(root) / time.strftime("%Y%m%d-%H%M%S")
    for number in itertools.count(1):
        candidate = base if number == 1 else base.with_name(f"{base.name}-{number}")
        try:
            candidate.mkdir(parents=True)  # exclusive: of two runs racing for a name, one gets it
        except FileExistsError:
            continue
        except OSError as error:
            raise UserError(f"cannot create the run folder {candidate}: {_why(error)}") from None
        return candidate
    raise AssertionError("unreachable")


def _remove_old_run(folder: Path) -> None:
    """Move the old run aside in one rename (the new run never sees a half-deleted folder), then
    delete it. The current folder and its parents are never deleted."""
    resolved = folder.resolve()
    here = Path.cwd().resolve()
    if resolved == here or resolved in here.parents:
        raise UserError(f"--overwrite would delete {folder}, which holds the current folder; "
                        "choose another --out")
    aside = resolved.with_name(f".{resolved.name}.replaced-{os.getpid()}")
    try:
        os.rename(resolved, aside)
    except OSError as error:
        raise UserError(f"cannot replace the run in {folder}: {_why(error)}") from None
    shutil.rmtree(aside, ignore_errors=True)


def claim(out: Path | None, overwrite: bool = False) -> Path:
    """The folder this run writes to, created and claimed: `out`, or a new default folder.

    Raises UserError (one line) when `out` holds a run and `overwrite` is off, or when the folder
    cannot be created or written."""
    if out is None:
        return claim_default()
    out = Path(out)
    refusal = (f"{out} already holds a run (results.json); choose another --out, "
               "or add --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder; choose another --out")
    if holds_results(out):
        if not overwrite:
            raise UserError(refusal)
        _remove_old_run(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        # Claim results.json exclusively: of two runs started into one empty folder, one gets it.
        os.close(os.open(out / "results.json", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        raise UserError(refusal) from None
    except OSError as error:
        raise UserError(f"cannot create the run folder {out}: {_why(error)}") from None
    return out
