"""`spotdiff port`: the verb on the command line; `register(app)` adds it.

Exit status: 0 when every target matches the source within the measured float32 noise floor, 1
when one diverges (or no verdict could be reached), 2 on bad input (one line; the child's
traceback stays in the run folder).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
LAYOUTS = ("auto", "nchw", "nhwc")
RESULT_FILE = "port.json"


def _out_dir(out: Optional[Path]) -> Path:
    from spotdiff.errors import UserError
    from spotdiff.record.run_folder import claim_default

    if out is None:
        return claim_default()
    if (Path(out) / RESULT_FILE).exists():
        raise UserError(f"--out {out} already holds a port check ({RESULT_FILE}); choose another --out")
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"--out {out}: cannot create it ({error.strerror or error})") from None
    return Path(out)


def port(
    models: list[str] = typer.Argument(
        ...,
        metavar="SOURCE TARGET [TARGET]...",
        help="FRAMEWORK[@BACKEND]:PATH:FACTORY, e.g. torch:net.py:Net",
    ),
    inputs: list[str] = typer.Option(
        None,
        "--input",
        help="DTYPE[D0,...] in the source's layout, "
        "int32[8,16]:vocab=100, or FILE.npz (repeatable; required)",
    ),
    layout: str = typer.Option(
        "auto", "--layout", help="the targets' layout: auto | nchw | nhwc (default auto)"
    ),
    steps: int = typer.Option(2, "--steps", help="training steps recorded (default 2)"),
    optimizer: str = typer.Option("sgd", "--optimizer", help="sgd | adam | adamw | rmsprop (default sgd)"),
    lr: Optional[float] = typer.Option(
        None, "--lr", help="learning rate (default 0.1 for sgd, 1e-3 otherwise)"
    ),
    native: bool = typer.Option(
        False,
        "--native",
        help="keep each framework's optimiser defaults (default: every setting passed explicitly, aligned)",
    ),
    map_file: Optional[Path] = typer.Option(
        None, "--map", help="TOML: [layers] source = target (default: match in call order by kind and shape)"
    ),
    dump_map: Optional[Path] = typer.Option(None, "--dump-map", help="write the matching chosen (TOML)"),
    labels: bool = typer.Option(False, "--labels", help="loss: cross-entropy against seeded labels "
                                "over the output's last axis (default: mean square of the output)"),
    seed: int = typer.Option(0, "--seed", help="seed of the drawn inputs (default 0)"),
    out: Optional[Path] = typer.Option(None, "--out", help="output folder (default runs/<timestamp>)"),
    timeout: float = typer.Option(900.0, "--timeout", help="seconds per round of recorders (default 900)"),
) -> None:
    """Check a port: transfer the source's weights into each target and find where they diverge."""
    from spotdiff.errors import UserError
    from spotdiff.locate.summary import paragraph
    from spotdiff.port.loading import optimizer_settings
    from spotdiff.port.matching import MatchError, read_map
    from spotdiff.port.output import write_outputs
    from spotdiff.port.run import PortFailed, PortRequest
    from spotdiff.port.run import port as run_port
    from spotdiff.port.specs import parse_inputs, parse_model

    if len(models) < 2:
        raise UserError(
            "port needs a SOURCE and at least one TARGET, e.g. torch:net.py:Net keras:net_k.py:build"
        )
    if optimizer not in OPTIMIZERS:
        raise UserError(f"unknown --optimizer {optimizer!r}; choose from: {', '.join(OPTIMIZERS)}")
    if layout not in LAYOUTS:
        raise UserError(f"unknown --layout {layout!r}; choose from: {', '.join(LAYOUTS)}")
    if steps < 1:
        raise UserError(f"--steps must be at least 1, got {steps}")
    specs = [parse_model(text) for text in models]
    parsed_inputs = parse_inputs(inputs or [])
    pinned = None
    if map_file is not None:
        if not map_file.is_file():
            raise UserError(f"--map {map_file}: file does not exist")
        try:
            pinned = read_map(map_file)
        except MatchError as error:
            raise UserError(str(error)) from None
    out_dir = _out_dir(out)
    request = PortRequest(
        specs[0],
        specs[1:],
        parsed_inputs,
        layout,
        steps,
        optimizer_settings(optimizer, lr, native, labels, seed),
        pinned,
        seed,
        timeout,
    )
    console = Console(width=None if sys.stdout.isatty() else 160)
    with console.status(f"recording {steps} steps of {', '.join(request.names)} …"):
        try:
            result = run_port(request, out_dir / "recorders", dump_map)
        except UserError as error:
            (out_dir / "error.txt").write_text(str(error) + "\n")
            raise
        except PortFailed as error:  # not the user's input: a failed result, said in one line
            (out_dir / "error.txt").write_text(str(error) + "\n")
            console.print(f"spotdiff port: no verdict: {error}", highlight=False, markup=False)
            raise typer.Exit(1) from None
    paths = write_outputs(result, out_dir)
    console.print(paragraph(result), highlight=False, markup=False, soft_wrap=True)
    for note in result["notes"]:
        console.print(f"note: {note}.", highlight=False, markup=False, soft_wrap=True)
    for name, layout_of in result["layouts"].items():
        if layout_of == "nhwc" and result["layouts"].get(request.names[0]) != "nhwc":
            console.print(
                f"{name}: inputs given channels-last (NHWC); feature maps compared NCHW",
                highlight=False,
                markup=False,
            )
    console.print(f"tables: {paths['json']}", highlight=False, markup=False)
    console.print(f"html:   {paths['html']}", highlight=False, markup=False)
    if result["base"]["status"] != "no divergence":
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the `port` verb to the spotdiff app."""
    app.command("port")(port)
