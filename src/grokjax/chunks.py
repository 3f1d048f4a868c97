"""A plan cut into chunks: the unit of work of a sweep on a Ray cluster (``ray_sweep``).

A chunk is a run of consecutive runs of one bucket, sized to last a few minutes on one worker,
so that a lost worker costs minutes and a slow one holds up no more than its last chunk. The cut
depends only on the plan and the size, so a driver that is restarted cuts the same chunks; every
chunk keeps its whole bucket's padded train rows, so all chunks of a bucket run one compiled
program.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass

from grokjax.plan import Bucket

# FLOP/s (useful_flops_per_run_step's) one worker sustains, to size chunks; --chunk-runs
# overrides. A CPU core: 14-34 GFLOP/s measured (benchmarks/README.md); one GPU or TPU host:
# a guess at a third of a float32 peak.
WORKER_FLOPS = {"cpu": 2e10, "gpu": 1e13, "tpu": 1e13}


def useful_flops_per_run_step(order: int, width: int, n_train: int, eval_every: int,
                              num_ops: int = 2) -> float:
    """The three K×M matmuls of a training step, and the evaluation forward on all M^num_ops
    rows once every ``eval_every`` steps; gathers, activations and the optimizer's update are
    not counted."""
    return 6 * n_train * width * order + 2 * order**num_ops * width * order / eval_every


def runs_per_chunk(bucket: Bucket, minutes: float, flops_per_second: float) -> int:
    """How many of ``bucket``'s runs, trained to the end, take ``minutes`` on one worker."""
    s = bucket.static
    per_run = s.steps * useful_flops_per_run_step(s.order, s.width, bucket.train_rows,
                                                  s.eval_every, s.num_ops)
    return max(1, math.floor(minutes * 60 * flops_per_second / per_run))


@dataclass(frozen=True)
class Chunk:
    id: str  # the bucket's id and the chunk's run ids, hashed
    bucket: Bucket  # the chunk's runs only, padded as their whole bucket

    @property
    def run_ids(self) -> list[str]:
        return [run.run_id for run in self.bucket.runs]


def cut(buckets: list[Bucket], size: Callable[[Bucket], int]) -> list[Chunk]:
    """Every bucket's runs, in plan order, in chunks of ``size(bucket)`` runs."""
    chunks = []
    for bucket in buckets:
        step = size(bucket)
        for start in range(0, len(bucket.runs), step):
            runs = bucket.runs[start:start + step]
            key = " ".join([bucket.id, *(run.run_id for run in runs)])
            chunks.append(Chunk(hashlib.sha1(key.encode()).hexdigest()[:12], dataclasses.replace(
                bucket, runs=runs, train_rows_at_least=bucket.train_rows)))
    return chunks
