"""debug.json, the terminal table and a self-contained debug.html (neutral: no framework import)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jinja2
from rich.table import Table
from rich.text import Text

from spotdiff.probes.debug.schema import MODE_HELP, PROBE_FIELDS, PROBES


def _yes(flag: Any, yes: str, no: str) -> str:
    return yes if flag else no


def _short(name: str | None) -> str:
    return (name or "-").rsplit(".", 1)[-1]


def summary(row: dict[str, Any]) -> str:
    """One table cell: the probe's outcome in a few words."""
    if row["status"] != "ok":
        return f"{row['status']}: {row['error']}"
    r, probe = row["result"], row["probe"]
    if probe == "print":
        traces = f", {r['traces']} traces" if r.get("traces") is not None else ""
        readable = _yes(r["value_concrete"], "numpy reads it", "numpy cannot read it")
        return f"{r['print_count']}x in {r['steps']} steps{traces}; {r['value_type']}, {readable}"
    if probe == "error":
        where = ("user line in traceback" if r["user_frame"]
                 else _yes(r["message_names_line"], "user line in message only", "user line not shown"))
        return (f"{where}; frames {r['frames_user']} user / {r['frames_framework']} framework; "
                f"{_short(r['exception'])} after {r['seconds_to_error']:.2f} s")
    if probe == "postmortem":
        local = _yes(r["read_local"], f"h is {_short(r['local_type'])}", "h unreadable")
        if r["reached_user_frame"]:
            return f"pdb reaches the user frame; {local}"
        if r.get("reached_forward"):
            return f"pdb reaches the forward only in {r['forward_file']}; {local}"
        return "pdb cannot reach the forward"
    if probe == "nan":
        if not r["stopped"]:
            return f"did not stop (loss NaN: {_yes(r['nan_without_tool'], 'yes', 'no')})"
        about = _yes(r["mentions_nan"], "", " (not about NaN)")
        return (f"stopped{about}; log op {_yes(r['names_log_op'], 'named', 'not named')}, "
                f"user line {_yes(r['names_user_line'], 'named', 'not named')}")
    if probe == "graph":
        text = f"{r['ops_total']} ops ({r['kind']})"
        if r.get("graphs", 1) > 1:
            text += f", {r['graphs']} graphs"
        if "lowered_ops_total" in r:
            text += f"; {r['lowered_ops_total']} {r['lowered_kind']} ops"
        return text
    return json.dumps(r)


def pairs(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, dict]]:
    """(framework, mode) -> probe -> row, in the order the rows were measured."""
    grouped: dict[tuple[str, str], dict[str, dict]] = {}
    for row in doc["rows"]:
        grouped.setdefault((row["framework"], row["mode"]), {})[row["probe"]] = row
    return grouped


def write_json(out_dir: Path, doc: dict[str, Any]) -> Path:
    """Write debug.json atomically (a reader never sees half a file)."""
    path = out_dir / "debug.json"
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    os.replace(partial, path)
    return path


def terminal_table(doc: dict[str, Any]) -> Table:
    probes = [p for p in PROBES if any(r["probe"] == p for r in doc["rows"])]
    table = Table(title=f"spotdiff debug ({doc['task']}): what a developer can see", title_justify="left")
    table.add_column("framework")
    table.add_column("mode")
    for probe in probes:
        table.add_column(probe)
    style = {"ok": "", "failed": "red", "skipped": "yellow"}
    for (framework, mode), rows in pairs(doc).items():
        cells = [Text(summary(rows[p]), style=style[rows[p]["status"]]) if p in rows else Text("-")
                 for p in probes]
        table.add_row(framework, mode, *cells)
    return table


PAGE = jinja2.Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>spotdiff debug: {{ doc.task }}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; } th, td { border: 1px solid #ccc; padding: 4px 8px;
vertical-align: top; text-align: left; } th { background: #f3f3f3; }
td.failed { background: #fde8e8; } td.skipped { background: #fff7e0; } code { font-size: 12px; }
.small { color: #666; font-size: 12px; }
</style></head><body>
<h1>Debuggability, measured</h1>
<p class="small">task {{ doc.task }} &middot; {{ doc.created }} &middot;
{% for name, version in doc.versions.items() %}{{ name }} {{ version }} {% endfor %}&middot;
print probe over {{ doc.settings.steps }} steps</p>
<table><tr><th>framework</th><th>mode</th>{% for p in probes %}<th>{{ p }}</th>{% endfor %}</tr>
{% for (framework, mode), rows in grouped.items() %}<tr><td>{{ framework }}</td>
<td title="{{ help.get((framework, mode), '') }}">{{ mode }}</td>
{% for p in probes %}{% set row = rows.get(p) %}<td class="{{ row.status if row else '' }}">
{{ summary(row) if row else '-' }}</td>{% endfor %}</tr>
{% endfor %}</table>
<h2>Graph op counts</h2>
{% for (framework, mode), rows in grouped.items() %}{% set g = rows.get('graph') %}
{% if g and g.status == 'ok' %}<h3>{{ framework }} {{ mode }}: {{ g.result.kind }}
<span class="small">({{ g.result.function }},
<a href="{{ g.result.dump }}"><code>{{ g.result.dump }}</code></a>)</span></h3>
<table><tr><th>op</th><th>count</th></tr>{% for op, n in g.result.op_counts.items() %}
<tr><td><code>{{ op }}</code></td><td>{{ n }}</td></tr>{% endfor %}</table>
{% if g.result.lowered_op_counts %}<p>{{ g.result.lowered_kind }}: {{ g.result.lowered_ops_total }} ops
({{ g.result.lowered_op_counts.items() | map("join", " ") | join(", ") }})</p>
{% endif %}{% endif %}{% endfor %}
<h2>Fields</h2>
{% for probe, fields in fields.items() %}<h3>{{ probe }}</h3><table>
{% for name, text in fields.items() %}<tr><td><code>{{ name }}</code></td><td>{{ text }}</td></tr>{% endfor %}
</table>{% endfor %}
</body></html>
""", autoescape=True)


def write_html(out_dir: Path, doc: dict[str, Any]) -> Path:
    """debug.html: the table and op counts, inline CSS, no external resources."""
    probes = [p for p in PROBES if any(r["probe"] == p for r in doc["rows"])]
    html = PAGE.render(doc=doc, probes=probes, grouped=pairs(doc), summary=summary,
                       help=MODE_HELP, fields=PROBE_FIELDS)
    path = out_dir / "debug.html"
    path.write_text(html, encoding="utf-8")
    return path
