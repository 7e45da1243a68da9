"""Command-line input of `spotdiff where` checked and turned into a `Request` (no framework import).

Bad input raises UserError (one line, exit 2): an unknown task or one that declares no recording,
a framework without `record_steps` for the task, a mode, variant or `--set` key it does not have.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

from spotdiff import frameworks as fw
from spotdiff.errors import UserError
from spotdiff.locate.run import Request


def recording_frameworks(task: str, modes: dict[str, tuple[str, ...]]) -> list[str]:
    """Frameworks of `task` whose implementation defines `record_steps` (read, not imported)."""
    from spotdiff.tasks import impl_module

    found = []
    for name in modes:
        try:
            origin = importlib.util.find_spec(impl_module(task, fw.FRAMEWORKS[name].impl_prefix)).origin
        except (ImportError, ValueError, AttributeError):
            continue
        if origin and re.search(r"^def record_steps\(", Path(origin).read_text(), re.MULTILINE):
            found.append(name)
    return found


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def plan_request(task: str, frameworks: str | None, modes: str | None, steps: int | None,
                 variant: str | None, hparams: str | None, sets: list[str], seed: int,
                 out: Path | None, timeout_s: float, task_modules: list[Path],
                 tfdbg: bool = False) -> tuple[Request, Path]:
    """The validated request and the (created) output folder; with `tfdbg`, the TensorFlow
    recorder dumps tfdbg v2 into <out>/tfdbg."""
    from spotdiff.experiment import parse_set
    from spotdiff.overrides import params_for
    from spotdiff.record.run_folder import claim_default
    from spotdiff.tasks import get_spec, register_task_file, task_source

    for path in task_modules:
        register_task_file(path)
    spec = get_spec(task)
    if spec.where_steps is None:
        raise UserError(f"task {task!r} declares no per-step recording (TaskSpec.where_steps); "
                        "`spotdiff where` needs record_steps in its implementations")
    able = recording_frameworks(task, spec.modes)
    installed = [n for n in able if fw.installed_version(n) is not None]
    chosen = []
    for name in _split(frameworks) or installed:
        canonical = fw.canonical(name)
        if canonical not in installed:
            choices = ", ".join(installed)
            raise UserError(f"framework {name!r} cannot record {task} here; choose from: {choices}")
        chosen.append(canonical)
    chosen = list(dict.fromkeys(chosen))
    if len(chosen) < 2:
        raise UserError(f"where compares frameworks: give at least two (available: {', '.join(installed)})")
    wanted, picked = _split(modes), {}
    for name in chosen:
        own = [m for m in wanted if m in spec.modes[name]] if wanted else list(spec.modes[name][:1])
        if not own:
            raise UserError(f"{name} has none of the modes {', '.join(wanted)}; "
                            f"its modes: {', '.join(spec.modes[name])}")
        picked[name] = own[0]
    variant = variant or spec.variants[-1]
    if variant not in spec.variants:
        raise UserError(f"unknown variant {variant!r} for {task}; choose from: {', '.join(spec.variants)}")
    overrides: dict[str, Any] = parse_set(sets)
    fields = spec.params.model_fields
    if hparams is not None:
        if "hparams" not in fields:
            raise UserError(f"task {task} has no --hparams setting")
        if hparams not in ("aligned", "native"):
            raise UserError(f"unknown --hparams {hparams!r}; choose from: aligned, native")
        overrides["hparams"] = hparams
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        choices = ", ".join(sorted(fields))
        raise UserError(f"unknown --set key {unknown[0]!r} for {task}; choose from: {choices}")
    if tfdbg and "tensorflow" not in chosen:
        raise UserError("--tfdbg records the TensorFlow recorder: add tensorflow to --frameworks")
    params_for(spec, overrides)  # a bad value stops here, in one line
    steps = spec.where_steps if steps is None else steps
    if steps < 1:
        raise UserError(f"--steps must be at least 1, got {steps}")
    if out is None:
        out_dir = claim_default()
    else:
        try:
            Path(out).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"--out {out}: cannot create it ({error.strerror or error})") from None
        out_dir = Path(out)
    request = Request(task, chosen, picked, variant, steps, overrides, seed, timeout_s, task_source(task))
    if tfdbg:
        if (out_dir / "tfdbg").exists():
            raise UserError(f"{out_dir / 'tfdbg'} exists already: give another --out "
                            "(a dump is never overwritten)")
        request.tfdbg_root = str((out_dir / "tfdbg").resolve())
    return request, out_dir
