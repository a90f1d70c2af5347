"""The `optimize_routes` activity (task queue `routing`): matrix from the cache, solve in a process.

The solve holds the GIL for its whole time limit, so it runs in a ProcessPoolExecutor (spawned
processes: forking a process that runs Temporal's core threads is unsafe) while the event loop
heartbeats. A solve always ends by its time limit; a guard still fails the activity rather than
wait forever if a process dies or overruns.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.interfaces import implements
from activities.interfaces.routing import RoutingInterface
from activities.routing.engine import solve
from activities.routing.matrix import CachedMatrices, HaversineProvider, MatrixProvider, OsrmProvider
from domain.routing import OptimizeRoutesInput, RoutePlan

if TYPE_CHECKING:
    from activities.resources import ActivityResources as Resources

HEARTBEAT_EVERY_S = 2.0
OVERRUN_GRACE_S = 60.0  # beyond the time limit, before a solve counts as lost


class RoutingActivities(RoutingInterface):
    def __init__(self, matrices: CachedMatrices, processes: int = 1) -> None:
        self.matrices = matrices
        self.pool = ProcessPoolExecutor(
            max_workers=processes, mp_context=multiprocessing.get_context("spawn")
        )

    @classmethod
    def from_resources(cls, resources: Resources) -> RoutingActivities:
        s = resources.settings
        provider: MatrixProvider = (
            OsrmProvider(s.routing_osrm_url)
            if s.routing_osrm_url
            else HaversineProvider(s.routing_detour_factor, s.routing_speeds_kmh)
        )
        return cls(
            CachedMatrices(provider, resources.cache_bus, s.routing_matrix_cache_ttl_seconds),
            s.routing_solver_processes,
        )

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    @implements(RoutingInterface.optimize_routes)
    async def optimize_routes(self, input: OptimizeRoutesInput) -> RoutePlan:  # noqa: A002 (the SDK's word)
        problem, options = input.problem, input.options
        if options.time_limit_s <= 0:
            raise ApplicationError("time_limit_s must be positive", type="InvalidProblem", non_retryable=True)
        activity.heartbeat("matrix")
        matrix = await self.matrices.matrix(problem.locations, [v.profile for v in problem.vehicles])
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.pool, solve, problem, matrix, options)
        deadline = loop.time() + options.time_limit_s + OVERRUN_GRACE_S
        while True:
            done, _ = await asyncio.wait({future}, timeout=HEARTBEAT_EVERY_S)
            if done:
                break
            activity.heartbeat("solving")
            if loop.time() > deadline:
                future.cancel()
                raise ApplicationError("the solver overran its time limit", type="SolverOverrun")
        try:
            return future.result()
        except ValueError as exc:  # the problem does not fit its matrix
            raise ApplicationError(str(exc), type="InvalidProblem", non_retryable=True) from exc
        except BrokenProcessPool as exc:
            raise ApplicationError("the solver process died", type="SolverCrashed") from exc
