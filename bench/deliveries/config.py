"""The benchmark's constants and the settings its API, worker and children run with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plumbing.settings import Settings

MODULE = "bench.deliveries"
GOAL_RATIO = 0.8
WARMUP = 20
# The worker records a delivery in two workflows and five activities; on a busy two-core machine
# 500 of them have taken 45-85 s to drain, so a drain may take up to this long before the next phase.
DRAIN_TIMEOUT_S = 180.0
REQUEST_TIMEOUT_S = 30.0
SIDES = ("api", "raw")
WORKER_MODES = ("process", "inprocess", "none")
RESULT = "@result "
READY = "@ready"


def bench_settings(config: dict[str, Any]) -> Settings:
    return Settings(
        env="test",
        data_dir=Path(config["data_dir"]),
        database_url=config["database_url"],
        redis_url=None,
        mongodb_url=None,
        temporal_address=config["temporal_address"],
        temporal_namespace=config["namespace"],
        temporal_task_queue=config["task_queue"],
        access_token_ttl_seconds=3600,
        # One client sends everything from one address as one user: limits far above the load, so
        # they never answer 429, yet every request still pays for being counted.
        rate_limit_ip=100_000_000,
        rate_limit_user=100_000_000,
        worker_metrics_port=0,
        temporal_metrics_port=0,
        # A pool as large as the requests in flight (WAYBILL_DB_POOL_SIZE, as a deployment sizes it):
        # with the default 10 (+10 overflow) bursts above 10 open and close connections all the time.
        db_pool_size=max(10, int(config.get("concurrency", 10))),
    )
