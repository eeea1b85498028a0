"""A fault-injection point for tests of what a kill at a given step leaves behind.

Off unless the environment variable ``SPARK_CLUSTERING_FAULT`` names the point: a
comma-separated list of ``<point>`` or ``<point>=<action>``, for example
``SPARK_CLUSTERING_FAULT=commit:published``. When the running job reaches that point it prints
``spark-clustering: fault injected at <point> (<action>)`` on stderr and then

- ``kill`` (the default): sends itself SIGKILL, so nothing of Python's clean-up runs, exactly as
  an out-of-memory killer or a lost node would end it;
- ``stop``: sends itself SIGSTOP, so it stays alive (holding its lock) until a SIGCONT.

The points of ``segment``'s commit are listed in :data:`COMMIT_STEPS` and in docs/segment.md.
"""

from __future__ import annotations

import os
import signal
import sys

ENV = "SPARK_CLUSTERING_FAULT"

#: The steps of a segment run's commit, in order (see spark_clustering.jobs.publish).
COMMIT_STEPS = ("locked", "written", "record-written", "published", "cleaned")


def fault_point(point: str) -> None:
    """Kill (or stop) this process here when ``SPARK_CLUSTERING_FAULT`` names ``point``."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    for item in spec.split(","):
        name, _, action = item.strip().partition("=")
        if name != point:
            continue
        action = action or "kill"
        if action not in ("kill", "stop"):
            raise ValueError(f"{ENV}={spec!r}: action {action!r}; accepted: kill, stop")
        print(f"spark-clustering: fault injected at {point} ({action})", file=sys.stderr,
              flush=True)  # fmt: skip
        os.kill(os.getpid(), signal.SIGKILL if action == "kill" else signal.SIGSTOP)
