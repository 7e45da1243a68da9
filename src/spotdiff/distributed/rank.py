"""One rank of a data-parallel group:  python -m spotdiff.distributed.rank PLAN_JSON RANK

Started by `spotdiff.children`, pinned to its share of cores before anything was imported; builds
the task's data (numpy), runs the framework's engine (`tasks/<task>/<prefix>_dp_impl.py`), and writes
`rank<R>/result.json` (and the final weights on rank 0), or `rank<R>/error.json`.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

from spotdiff.children import peak_rss_mb
from spotdiff.distributed.plan import GroupPlan, RankContext
from spotdiff.overrides import params_for


def run_rank(plan: GroupPlan, rank: int) -> dict:
    from spotdiff import frameworks
    from spotdiff.tasks import get_spec, impl_module, restore_task_source

    if plan.task_source:
        restore_task_source(plan.task, plan.task_source)
    spec = get_spec(plan.task)
    params = params_for(spec, plan.params)
    data = spec.build_data(params, plan.seed)
    start = time.perf_counter()
    engine = importlib.import_module(
        impl_module(plan.task, frameworks.FRAMEWORKS[plan.framework].impl_prefix + "_dp")
    )
    import_s = time.perf_counter() - start  # the framework, imported by its engine module
    result = engine.train(RankContext(plan, rank), params, data)
    weights = result.pop("weights")
    if rank == 0:
        import numpy as np

        np.savez(Path(plan.out_dir) / "weights.npz", **weights)
    result.update(
        {
            "rank": rank,
            "cores": plan.cores[rank],
            "import_s": import_s,
            "startup_s": result["group_ready_walltime"] - plan.launch_walltime,
            "peak_rss_mb": peak_rss_mb(),
        }
    )
    return result


def main(argv: list[str]) -> int:
    plan_path, rank = Path(argv[0]), int(argv[1])
    rank_dir = plan_path.parent / f"rank{rank}"
    try:
        plan = GroupPlan.load(plan_path)
        result = run_rank(plan, rank)
        (rank_dir / "result.json").write_text(json.dumps(result), encoding="utf-8")
        # Skip interpreter teardown: frameworks' exit hooks (TF's coordination service, gloo)
        # took seconds here, waiting on peers; everything this rank owes is on disk.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    except BaseException as error:  # noqa: BLE001 (every failure, SystemExit included, leaves error.json)
        lines = str(error).strip().splitlines()
        (rank_dir / "error.json").write_text(
            json.dumps(
                {
                    "type": type(error).__name__,
                    "message": lines[0] if lines else "(no message)",
                    "traceback": traceback.format_exc()[-4000:],
                }
            ),
            encoding="utf-8",
        )
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
