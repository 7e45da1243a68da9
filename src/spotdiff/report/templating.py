"""The one Jinja2 environment every HTML page of spotdiff renders with (report, compare, where)."""

from __future__ import annotations

import jinja2
from markupsafe import Markup

from spotdiff.report.plots import format_value


def environment() -> jinja2.Environment:
    """Templates from spotdiff/report/templates, autoescaped; filters `fmt` and `svg`."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("spotdiff.report", "templates"),
        autoescape=True, trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["fmt"] = format_value
    env.filters["svg"] = lambda text: Markup(text)  # matplotlib's SVG: text content already escaped
    return env
