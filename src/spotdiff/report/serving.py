"""The serving section of a report: `spotdiff loadtest` results (the `serving` block of results.json).

Rows count failed requests apart (`failed`); their latencies and throughput are of the successful
requests only, and a run with any failure carries a "degraded: ..." status, shown above the tables.

`serving_context(results)` is what the HTML partial `_serving.html` lays out (None when the run has no
load test); `serving_table(results)` is the same numbers as a rich table for the terminal.
"""

from __future__ import annotations

from typing import Any

from spotdiff.report.plots import format_value

PROTOCOL_LABELS = {
    "rest-tfserving": "REST · TF Serving v1",
    "rest-kserve": "REST · KServe v2",
    "grpc-tfserving": "gRPC · TF Serving",
    "grpc-kserve": "gRPC · KServe v2",
    "flask": "Flask baseline (REST)",
}


def _row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": row.get("model"),
        "framework": row.get("framework"),
        "format": row.get("format"),
        "protocol": PROTOCOL_LABELS.get(row.get("protocol"), row.get("protocol")),
        "concurrency": row.get("concurrency"),
        "requests": row.get("requests"),
        "failed": row.get("failed"),
        "throughput": format_value(row.get("throughput_rps")),
        "p50": format_value(row.get("p50_ms")),
        "p90": format_value(row.get("p90_ms")),
        "p99": format_value(row.get("p99_ms")),
        "stopped_by": row.get("stopped_by"),
    }


def serving_context(results: dict[str, Any]) -> dict[str, Any] | None:
    """Rows, ratios, overheads and mobile figures, formatted for the template; None without a load test."""
    serving = results.get("serving")
    if not isinstance(serving, dict):
        return None
    order = list(PROTOCOL_LABELS)
    rows = sorted(
        (r for r in serving.get("rows") or [] if isinstance(r, dict)),
        key=lambda r: (
            str(r.get("model")),
            order.index(r["protocol"]) if r.get("protocol") in order else 99,
            r.get("concurrency") or 0,
        ),
    )
    return {
        "status": results.get("status"),
        "degraded": str(results.get("status", "")).startswith("degraded"),
        "bounds": serving.get("bounds") or {},
        "flask_server": serving.get("flask_server"),
        "process_tuning": serving.get("process_tuning") or {},
        "rows": [_row(r) for r in rows],
        "ratios": [
            {
                **r,
                **{
                    k: format_value(r.get(k))
                    for k in ("throughput_ratio", "p99_ratio", "p99_ms", "flask_p99_ms")
                },
            }
            for r in serving.get("flask_ratio") or []
        ],
        "overheads": [
            {**o, **{k: format_value(o.get(k)) for k in ("rest_p50_ms", "in_process_p50_ms", "overhead_ms")}}
            for o in serving.get("rest_overhead") or []
        ],
        "mobile": [
            {
                **m,
                "size_kb": format_value((m.get("size_bytes") or 0) / 1024),
                "p50": format_value(m.get("p50_ms")),
            }
            for m in serving.get("mobile") or []
        ],
        "failures": serving.get("failures") or [],
    }


def serving_table(results: dict[str, Any]):
    """A rich table of the load-test rows for the terminal, titled with the run's status."""
    from rich.table import Table

    context = serving_context(results) or {"rows": []}
    table = Table(
        "model", "protocol", "clients", "req", "failed", "req/s", "p50 ms", "p90 ms", "p99 ms",
        title=f"load test: {results.get('status', '?')}",
    )
    for row in context["rows"]:
        table.add_row(
            row["model"],
            row["protocol"],
            str(row["concurrency"]),
            str(row["requests"]),
            str(row["failed"]),
            row["throughput"],
            row["p50"],
            row["p90"],
            row["p99"],
        )
    return table
