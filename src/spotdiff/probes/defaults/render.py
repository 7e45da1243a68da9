"""Defaults audit results as terminal tables (rich), defaults.json, and a self-contained HTML
section (defaults.html: inline style, no scripts, no external resources, every value escaped)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

MAX_CELL = 70


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3g}"
    text = str(value)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def _deviation(found: dict[str, Any]) -> str:
    if found.get("max") is None:
        notes = [d["note"] for d in found.get("deviation", {}).values() if d.get("note")]
        return f"not comparable: {notes[0]}" if notes else "—"
    return f"{found['max']:.2g}"


def frameworks_of(results: dict[str, Any]) -> list[str]:
    return list(results["frameworks"])


def declared_cells(row: dict[str, Any], fw: str) -> str:
    entry = row["frameworks"].get(fw) or {}
    if entry.get("name") is None:
        return "(none)"
    if not entry.get("declared"):
        return f"({entry['name']}: not an argument)"
    default = entry.get("default")
    return f"{entry['name']}={'None' if default is None else _fmt(default)}"


def behaviour_cause(row: dict[str, Any]) -> str:
    """Native causes, then what aligning left (when not already said); failures last."""
    causes = [] if row["native"]["same"] else list(row["native"]["causes"])
    causes += [c for c in ([] if row["aligned"]["same"] else row["aligned"]["causes"]) if c not in causes]
    broken = [
        f"{fw} {s['status']}: {s['error']}" for fw, s in row["frameworks"].items() if s["status"] != "ok"
    ]
    return "; ".join([*causes, *broken]) or "—"


def init_cell(stats: dict[str, Any] | None) -> str:
    if not stats:
        return "(no such parameter)"
    spread = f"mean {stats['mean']:.3g}, std {stats['std']:.3g}, [{stats['min']:.3g}, {stats['max']:.3g}]"
    return f"{stats['identified']} ({spread})"


def tables(results: dict[str, Any]) -> list[Table]:
    """Declared defaults, behaviour (native vs aligned, with causes), sampled initialisers."""
    fws = frameworks_of(results)
    declared = Table(title="declared defaults (introspected)", title_justify="left")
    for name in ("component", "setting", *fws, "differs"):
        declared.add_column(name)
    for row in results["components"]:
        for entry in row["declared"]:
            differs = {True: "[red]yes[/]", False: "no", None: ""}[entry["differs"]]
            declared.add_row(
                row["component"], entry["neutral"], *[Text(declared_cells(entry, f)) for f in fws], differs
            )
    behaviour = Table(
        title=f"behaviour: max relative deviation from {fws[0] if fws else '-'} (tolerance "
        f"{results['tolerance']:g}; dropout 0.02)",
        title_justify="left",
    )
    for name in ("component", "native", "aligned", "verdict", "cause (measured)"):
        behaviour.add_column(name, overflow="fold")
    for row in results["components"]:
        style = (
            "green" if row["verdict"] == "same" else "yellow" if "aligned: same" in row["verdict"] else "red"
        )
        behaviour.add_row(
            row["component"],
            _deviation(row["native"]),
            _deviation(row["aligned"]),
            Text(row["verdict"], style=style),
            Text(behaviour_cause(row)),
        )
    init = Table(title="default initialisers (sampled)", title_justify="left")
    for name in ("parameter", *fws):
        init.add_column(name, overflow="fold")
    for row in results["initialisers"]:
        init.add_row(
            f"{row['component']}.{row['param']}", *[Text(init_cell(row["frameworks"].get(f))) for f in fws]
        )
    return [declared, behaviour, init] if results["initialisers"] else [declared, behaviour]


def framework_lines(results: dict[str, Any]) -> list[str]:
    lines = []
    for name, info in results["frameworks"].items():
        versions = ", ".join(f"{k} {v}" for k, v in (info.get("versions") or {}).items())
        lines.append(
            f"{name}: {info['status']}"
            + (f" ({versions})" if versions else "")
            + (f": {info['error']}" if info.get("error") else "")
        )
    return lines


def _table_html(caption: str, header: list[str], rows: list[list[str]]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return (
        f"<table><caption>{e(caption)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def html_section(results: dict[str, Any]) -> str:
    """A <section> with its own inline style; safe to embed in a report or open on its own."""
    fws = frameworks_of(results)
    declared = [
        [
            r["component"],
            d["neutral"],
            *[declared_cells(d, f) for f in fws],
            {True: "yes", False: "no", None: ""}[d["differs"]],
        ]
        for r in results["components"]
        for d in r["declared"]
    ]
    behaviour = [
        [r["component"], _deviation(r["native"]), _deviation(r["aligned"]), r["verdict"], behaviour_cause(r)]
        for r in results["components"]
    ]
    init = [
        [f"{r['component']}.{r['param']}", *[init_cell(r["frameworks"].get(f)) for f in fws]]
        for r in results["initialisers"]
    ]
    e = html.escape
    parts = [
        '<section class="spotdiff-defaults">',
        "<style>.spotdiff-defaults{font:13px/1.4 system-ui,sans-serif}"
        ".spotdiff-defaults table{border-collapse:collapse;margin:1em 0}"
        ".spotdiff-defaults td,.spotdiff-defaults th{border:1px solid #ccc;padding:2px 6px;text-align:left;"
        "vertical-align:top}.spotdiff-defaults caption{text-align:left;font-weight:bold}</style>",
        "<h2>Defaults audit</h2>",
        "<ul>" + "".join(f"<li>{e(line)}</li>" for line in framework_lines(results)) + "</ul>",
        f"<p>seed {e(str(results['seed']))}, {e(str(results['optimizer_steps']))} optimiser steps, "
        f"tolerance {e(str(results['tolerance']))}; {e(results['created_at'])}</p>",
        _table_html(
            f"behaviour: max relative deviation from {fws[0] if fws else '-'}",
            ["component", "native", "aligned", "verdict", "cause (measured)"],
            behaviour,
        ),
        _table_html("declared defaults (introspected)", ["component", "setting", *fws, "differs"], declared),
        _table_html("default initialisers (sampled)", ["parameter", *fws], init),
        "</section>",
    ]
    return "\n".join(parts) + "\n"


def write_outputs(results: dict[str, Any], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "defaults.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    # ASCII with character references: the section reads right without a <meta charset>
    (out_dir / "defaults.html").write_bytes(html_section(results).encode("ascii", "xmlcharrefreplace"))
