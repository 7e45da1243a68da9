"""What one data-parallel process group runs: written by the launcher, read by every rank."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spotdiff.distributed import sharding


@dataclass
class GroupPlan:
    """One process group: `workers` ranks on 127.0.0.1, rank r pinned to `cores[r]`."""

    task: str
    framework: str
    params: dict[str, Any]
    seed: int
    device: str
    workers: int
    cores: list[list[int]]  # per rank
    ports: list[int]  # free loopback ports: [0] is the coordinator; TF uses one per worker
    out_dir: str
    dropout: bool = True  # off in the equivalence tests: masks differ between 1 and N workers
    launch_walltime: float = 0.0  # time.time() just before the ranks were started
    task_source: dict[str, str] | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> GroupPlan:
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))


@dataclass
class RankContext:
    """One rank's view of its group; engines (tasks/<task>/*_dp_impl.py) get this."""

    plan: GroupPlan
    rank: int

    @property
    def world(self) -> int:
        return self.plan.workers

    @property
    def threads(self) -> int:
        return len(self.plan.cores[self.rank])

    @property
    def coordinator(self) -> str:
        return f"127.0.0.1:{self.plan.ports[0]}"

    @property
    def worker_addresses(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.plan.ports[: self.world]]

    @property
    def dropout(self) -> bool:
        return self.plan.dropout

    @property
    def seed(self) -> int:
        return self.plan.seed

    def images_per_epoch(self, data: dict[str, np.ndarray], global_batch: int) -> int:
        """Training images per epoch, over all ranks (full global batches only)."""
        return sharding.steps_per_epoch(len(data["epoch_order"][0]), global_batch) * global_batch

    def epoch_shard(self, order: np.ndarray, global_batch: int) -> np.ndarray:
        """(steps, B/N) indices this rank trains on in one epoch."""
        return sharding.shard(order, global_batch, self.world, self.rank)
