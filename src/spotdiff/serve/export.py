"""`spotdiff export`, parent side: one child process per trained digits cell; never imports a framework."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from spotdiff import children
from spotdiff.errors import UserError
from spotdiff.record import results as results_file

FORMATS = {
    "torch": ("pt2", "aoti", "onnx"),
    "tensorflow": ("savedmodel", "tflite", "tf2onnx"),
    "jax": ("jax", "jax2tf"),
}
ALL_FORMATS = tuple(f for group in FORMATS.values() for f in group)
MODEL_NAMES = {  # format -> the model folder it writes: MODEL_ROOT/<name>/<version>/
    "pt2": "digits-torch-pt2",
    "aoti": "digits-torch-aoti",
    "onnx": "digits-torch-onnx",
    "savedmodel": "digits-tensorflow-savedmodel",
    "tflite": "digits-tensorflow-tflite",
    "tf2onnx": "digits-tensorflow-onnx",
    "jax": "digits-jax-export",
    "jax2tf": "digits-jax-savedmodel",
}
MARK = "SPOTDIFF_EXPORT "


def exportable_cells(run_dir: Path) -> list[dict]:
    """The ok cells of a run that saved weights, of a task declaring their framework in its
    `exportable_models`, one per framework (the first found)."""
    from spotdiff.tasks import get_spec, task_names

    def exportable(cell: dict) -> bool:
        task = cell.get("task")
        return task in task_names() and cell.get("framework") in get_spec(task).exportable_models

    results_path = run_dir / "results.json"
    if not results_path.is_file():
        raise UserError(f"no results.json in {run_dir}; pass a run directory written by `spotdiff run`")
    chosen: dict[str, dict] = {}
    for cell in results_file.load(run_dir)["cells"]:  # a torn or empty file: one UserError line
        weights = (cell.get("artifacts") or {}).get("weights")
        if (
            cell.get("status") == "ok"
            and exportable(cell)
            and weights
            and Path(weights).is_file()
        ):
            chosen.setdefault(cell["framework"], cell)
    if not chosen:
        raise UserError(
            f"no ok digits cell with saved weights in {run_dir}; train one with `spotdiff run --tasks digits`"
        )
    return list(chosen.values())


def refuse_to_overwrite(out: Path, cells: list[dict], formats: list[str], version: int) -> None:
    """A UserError naming the first model version this export would replace (without --force)."""
    taken = [
        out / MODEL_NAMES[f] / str(version)
        for cell in cells
        for f in FORMATS.get(cell["framework"], ())
        if f in formats and (out / MODEL_NAMES[f] / str(version)).is_dir()
        and any((out / MODEL_NAMES[f] / str(version)).iterdir())
    ]
    if taken:
        more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
        raise UserError(
            f"version {version} of {taken[0].parent.name} already exists at {taken[0]}{more}; "
            f"pass --force to replace it, or write --version {version + 1}"
        )


def run_export(
    run_dir: Path,
    out: Path,
    formats: list[str],
    version: int = 1,
    timeout_s: float = 900.0,
    force: bool = False,
) -> dict:
    """Export every framework's digits model; write and return `out/export.json`.
    An existing `<name>/<version>/` is replaced only with `force`; otherwise nothing is written."""
    unknown = sorted(set(formats) - set(ALL_FORMATS))
    if unknown:
        raise UserError(f"unknown format {', '.join(unknown)}; choose from: {', '.join(ALL_FORMATS)}")
    if version < 1:
        raise UserError(f"--version {version}: versions are positive integers")
    cells = exportable_cells(run_dir)
    if not force:
        refuse_to_overwrite(out, cells, formats, version)
    out.mkdir(parents=True, exist_ok=True)
    artefacts, failures = [], []
    for cell in cells:
        wanted = [f for f in FORMATS.get(cell["framework"], ()) if f in formats]
        if not wanted:
            continue
        cell_dir = Path(cell["artifacts"]["weights"]).parent
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump(
                {"cell_dir": str(cell_dir), "out": str(out.resolve()), "version": version, "formats": wanted},
                handle,
            )
        env = {
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        }
        try:
            proc = children.run("spotdiff.serve.export_child", [handle.name], timeout_s=timeout_s,
                                pin=children.Pin.usable(), env=env)
        finally:
            os.unlink(handle.name)
        if proc.timed_out:
            failures.append({"framework": cell["framework"], "error": f"timed out after {timeout_s:.0f} s"})
            continue
        rows = [json.loads(line[len(MARK) :]) for line in proc.stdout.splitlines() if line.startswith(MARK)]
        artefacts += rows
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-1:] or [proc.reason or f"exit code {proc.returncode}"]
            failures.append(
                {"framework": cell["framework"], "error": tail[0], "stderr_tail": proc.stderr[-3000:]}
            )
    for row in artefacts:
        row["path"] = str(Path(row["path"]).relative_to(out.resolve()))
    previous = out / "export.json"
    if previous.is_file():  # a partial export (--formats) keeps the rows of the models it did not touch
        fresh = {row["name"] for row in artefacts}
        try:
            kept = [
                a for a in json.loads(previous.read_text()).get("artefacts", []) if a.get("name") not in fresh
            ]
        except (ValueError, AttributeError):
            kept = []
        artefacts = kept + artefacts
    result = {"run_dir": str(run_dir), "version": version, "artefacts": artefacts, "failures": failures}
    (out / "export.json").write_text(json.dumps(result, indent=1))
    return result
