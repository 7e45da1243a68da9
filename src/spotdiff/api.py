"""The Python API: `spotdiff.run(...)` returns a `Results`; the CLI is a layer over the same calls.

    import spotdiff
    results = spotdiff.run("exponent", frameworks=["torch", "jax"], steps=500, repeats=2)
    results.to_pandas()            # one row per cell, metrics as columns
    results.plot("steady_step_us") # a matplotlib Figure
    results.report("out/report.html")
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Iterable

from spotdiff.experiment import Experiment, build_experiment

EXPERIMENT_KEYS = set(Experiment.model_fields) - {"tasks", "frameworks", "modes", "variants", "overrides"}


class Results:
    """The outcome of a run: `cells` (one dict per cell, as in results.json) and the run directory."""

    def __init__(self, data: dict[str, Any], run_dir: Path):
        self.data, self.run_dir = data, Path(run_dir)

    @classmethod
    def load(cls, run_dir: str | Path) -> "Results":
        from spotdiff.record import results as results_file

        return cls(results_file.load(Path(run_dir)), Path(run_dir))

    @property
    def cells(self) -> list[dict[str, Any]]:
        return self.data["cells"]

    @property
    def parity(self) -> dict[str, Any]:
        return self.data.get("parity", {})

    @property
    def environment(self) -> dict[str, Any]:
        return self.data["environment"]

    def ok(self) -> list[dict[str, Any]]:
        return [c for c in self.cells if c["status"] == "ok"]

    def to_pandas(self):
        """A DataFrame with one row per cell: identity columns, status, error, then every metric."""
        try:
            import pandas as pd
        except ImportError:
            from spotdiff.errors import UserError

            raise UserError("Results.to_pandas needs pandas: pip install 'spotdiff[analysis]'") from None

        rows = [
            {k: c[k] for k in ("task", "framework", "mode", "variant", "seed", "status", "error")}
            | dict(c.get("metrics", {}))
            for c in self.cells
        ]
        return pd.DataFrame(rows)

    def plot(self, metric: str, task: str | None = None):
        """A horizontal bar chart of one metric per ok cell (log scale for times); a Figure."""
        from matplotlib.figure import Figure

        cells = [
            c
            for c in self.ok()
            if (task is None or c["task"] == task) and c["metrics"].get(metric) is not None
        ]
        if not cells:
            raise ValueError(f"no ok cell has metric {metric!r}")
        labels = [f"{c['task']} {c['framework']}-{c['mode']} {c['variant']}" for c in cells]
        values = [c["metrics"][metric] for c in cells]
        fig = Figure(figsize=(8, 0.35 * len(cells) + 1.2))
        ax = fig.subplots()
        ax.barh(labels, values)
        ax.invert_yaxis()
        ax.set_xlabel(metric)
        if metric.endswith(("_s", "_us")) and min(values) > 0:
            ax.set_xscale("log")
        fig.tight_layout()
        return fig

    def report(self, path: str | Path | None = None) -> Path:
        """Render report.html into the run directory (or copy it to `path`)."""
        from spotdiff.report.html import render_report

        written = render_report(self.data, self.run_dir)
        if path is None:
            return written
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(written.read_text(encoding="utf-8"), encoding="utf-8")
        return target

    def __repr__(self) -> str:
        counts = {s: sum(c["status"] == s for c in self.cells) for s in ("ok", "failed", "skipped")}
        return f"<spotdiff.Results {self.data.get('run_id')} {counts} in {self.run_dir}>"

    def _repr_html_(self) -> str:
        rows = "".join(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(v))}</td>"
                for v in (
                    c["task"],
                    c["framework"],
                    c["mode"],
                    c["variant"],
                    c["status"],
                    c.get("metrics", {}).get("steady_step_us", ""),
                    c.get("error") or "",
                )
            )
            + "</tr>"
            for c in self.cells
        )
        head = "".join(
            f"<th>{h}</th>"
            for h in ("task", "framework", "mode", "variant", "status", "steady µs/step", "error")
        )
        return f"<p>{html.escape(repr(self))}</p><table><tr>{head}</tr>{rows}</table>"


def _as_list(value: str | Iterable[str] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def run(
    tasks: str | Iterable[str] | None = None,
    frameworks: str | Iterable[str] | None = None,
    modes: str | Iterable[str] | None = None,
    variants: str | Iterable[str] | None = None,
    out: str | Path | None = None,
    report: bool = True,
    overwrite: bool = False,
    **options: Any,
) -> Results:
    """Run a comparison. `options` are experiment settings (seed, repeats, threads, device,
    cell_timeout_s, executor="ray" and address for a Ray cluster) or task options (anything
    `--set` takes, e.g. steps=500, optimizer="adam"). An `out` folder that holds a run raises
    UserError unless `overwrite=True` replaces it."""
    from spotdiff.orchestrate import run_experiment

    settings: dict[str, Any] = {"overrides": {}}
    for key, value in options.items():
        (settings if key in EXPERIMENT_KEYS else settings["overrides"])[key] = value
    for key, value in (
        ("tasks", tasks),
        ("frameworks", frameworks),
        ("modes", modes),
        ("variants", variants),
    ):
        if value is not None:
            settings[key] = _as_list(value)
    exp = build_experiment(settings)
    data, run_dir = run_experiment(exp, Path(out) if out else None, render=report, overwrite=overwrite)
    return Results(data, run_dir)
