"""`spotdiff where`: the verb on the command line; `register(app)` adds it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console


def where(
    task: str = typer.Argument(..., help="a task whose spec declares where_steps"),
    frameworks: Optional[str] = typer.Option(
        None, "--frameworks", "-f", help="comma list (default: the task's installed frameworks)"),
    modes: Optional[str] = typer.Option(
        None, "--modes", "-m",
        help="comma list; each framework records in the first listed mode it has (default: its first)"),
    steps: Optional[int] = typer.Option(
        None, "--steps", help="training steps recorded (default: the task's where_steps)"),
    variant: Optional[str] = typer.Option(None, "--variant", help="the variant recorded (default: the last)"),
    hparams: Optional[str] = typer.Option(
        None, "--hparams", help="aligned | native (default: the task's default)"),
    set_: list[str] = typer.Option(None, "--set", help="task option key=value (repeatable)"),
    seed: int = typer.Option(0, "--seed", help="seed for data and shared weights (default 0)"),
    out: Optional[Path] = typer.Option(None, "--out", help="output folder (default runs/<timestamp>)"),
    timeout: float = typer.Option(900.0, "--timeout", help="seconds per round of recorders (default 900)"),
    task_module: list[Path] = typer.Option(
        None, "--task-module", help="your own task: a spec.py or its folder (repeatable)"),
    tfdbg: bool = typer.Option(
        False, "--tfdbg", help="also dump the TensorFlow recorder with tfdbg v2 into <out>/tfdbg, for "
        "TensorBoard's Debugger V2 (default off)"),
) -> None:
    """Find the first step and layer where frameworks diverge in training, and the default causing it."""
    from spotdiff.locate.output import write_outputs
    from spotdiff.locate.plan import plan_request
    from spotdiff.locate.run import where as run_where
    from spotdiff.locate.summary import paragraph

    console = Console(width=None if sys.stdout.isatty() else 160)
    request, out_dir = plan_request(task, frameworks, modes, steps, variant, hparams, set_ or [],
                                    seed, out, timeout, task_module or [], tfdbg)
    with console.status(f"recording {request.steps} steps of {task} in {', '.join(request.frameworks)} …"):
        result = run_where(request, out_dir / "recorders")
    write_outputs(result, out_dir)
    console.print(paragraph(result), highlight=False, markup=False, soft_wrap=True)
    console.print(f"tables: {out_dir / 'where.json'}", highlight=False, markup=False)
    console.print(f"html:   {out_dir / 'where.html'}", highlight=False, markup=False)
    if request.tfdbg_root:
        root = request.tfdbg_root
        dumped = any(Path(root).glob("*.execution"))
        how = f"open with: tensorboard --logdir {root}, the Debugger V2 tab" if dumped else (
            "nothing dumped: the tensorflow recorder failed")
        console.print(f"tfdbg:  {root} ({how})", highlight=False, markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the `where` verb to the spotdiff app."""
    app.command("where")(where)

