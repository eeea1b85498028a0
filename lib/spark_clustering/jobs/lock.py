"""One writer per output: a lock file created atomically on the output's own file system.

The lock is a small JSON file naming its holder (host, pid, start time, run id). It is created
in one step that fails when the file exists: locally by a hard link of a fully written file
(:func:`spark_clustering.jobs.io.create_new_file`), on HDFS by ``create(path, overwrite=false)``
(one NameNode operation). On S3 that create is only exclusive where the store honours
conditional writes (``If-None-Match: *``, Hadoop 3.4.1+ with
``fs.s3a.create.conditional.enabled``); without them two runs started within the same second
can both believe they hold the lock. Each run reads the lock back after taking it and stops if
it names another run, which narrows that window but does not close it: on such a store schedule
one run per date (docs/segment.md).

A lock is *stale* when its holder provably died (same host, its pid no longer runs) or when it is
older than ``max_age`` seconds (:data:`LOCK_MAX_AGE`, 24 hours, longer than any run should
take). A stale lock is broken automatically; ``break_lock=True`` also breaks a lock held from
another host (which cannot be checked from here), never one whose holder runs on this host.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from . import io

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

#: Seconds after which a lock is taken for the remains of a dead run wherever its holder ran.
LOCK_MAX_AGE = 24 * 3600.0


class LockHeld(RuntimeError):
    """Another live run holds the lock; the message names it."""


@dataclass(frozen=True)
class Holder:
    """Who holds a lock (the JSON content of the lock file)."""

    host: str
    pid: int
    started: str
    run_id: str
    job: str = ""

    def describe(self) -> str:
        job = f"{self.job} " if self.job else ""
        return f"{job}run {self.run_id} (host {self.host}, pid {self.pid}, started {self.started})"

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), indent=2).encode()

    @classmethod
    def parse(cls, data: bytes) -> Holder | None:
        try:
            raw = json.loads(data.decode())
            return cls(str(raw["host"]), int(raw["pid"]), str(raw["started"]),
                       str(raw["run_id"]), str(raw.get("job", "")))  # fmt: skip
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return None  # being written (HDFS shows a file before its content) or not ours


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs on this host (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _age(holder: Holder) -> float | None:
    try:
        started = dt.datetime.fromisoformat(holder.started)
    except ValueError:
        return None
    return (dt.datetime.now(dt.timezone.utc) - started).total_seconds()


class WriterLock:
    """The lock file ``path``, taken by :meth:`acquire` and given back by :meth:`release`.

    Parameters
    ----------
    spark : SparkSession or None
        Needed for a non-local ``path`` (Hadoop ``FileSystem``).
    path : str
        The lock file, on the same file system as what it guards.
    run_id : str
        Written into the lock so that a second run can name the holder.
    job : str
        The job's name, also written into the lock.

    Examples
    --------
    >>> with WriterLock(None, "/data/segments/runs/run_date=2026-12-01/_lock", "abc").acquire():
    ...     pass  # doctest: +SKIP
    """

    def __init__(
        self, spark: SparkSession | None, path: str, run_id: str, job: str = "segment"
    ) -> None:
        self.spark = spark
        self.path = path
        self.holder = Holder(
            host=socket.gethostname(),
            pid=os.getpid(),
            started=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            run_id=run_id,
            job=job,
        )
        self.held = False

    def current_holder(self) -> tuple[Holder | None, bool]:
        """``(holder, exists)`` of the lock file as it is now (holder None when unreadable)."""
        data = io.read_bytes(self.spark, self.path)
        if data is None:
            return None, False
        return Holder.parse(data), True

    def stale_reason(self, holder: Holder | None, max_age: float) -> str | None:
        """Why the lock of ``holder`` is stale, or None while it may be alive."""
        if holder is None:
            try:
                file_age = io.age_seconds(self.spark, self.path)
            except OSError:
                return None
            return f"unreadable and {file_age:.0f} s old" if file_age > max_age else None
        if holder.host == self.holder.host and not _pid_alive(holder.pid):
            return f"process {holder.pid} no longer runs on {holder.host}"
        age = _age(holder)
        if age is not None and age > max_age:
            return f"taken {age / 3600:.1f} h ago, more than the {max_age / 3600:.1f} h limit"
        return None

    def acquire(
        self,
        wait: float = 0.0,
        break_lock: bool = False,
        max_age: float = LOCK_MAX_AGE,
        poll: float = 1.0,
    ) -> WriterLock:
        """Take the lock, or raise :class:`LockHeld` naming its holder.

        Parameters
        ----------
        wait : float
            Seconds to wait for a live holder to finish (0: fail at once).
        break_lock : bool
            Break a lock whose holder cannot be proven alive (another host); a holder alive
            on this host is never broken.
        max_age : float
            Seconds after which a lock is stale wherever its holder ran.
        poll : float
            Seconds between two tries while waiting.
        """
        deadline = time.monotonic() + max(0.0, wait)
        mine = self.holder.to_bytes()
        while True:
            if io.create_new_file(self.spark, self.path, mine):
                theirs = io.read_bytes(self.spark, self.path)
                if theirs == mine:
                    self.held = True
                    log.info("lock %s taken by %s", self.path, self.holder.describe())
                    return self
                # a store without conditional writes let another run overwrite our create
                holder = Holder.parse(theirs or b"")
                raise LockHeld(f"{self.path} was taken at the same time by "
                               f"{holder.describe() if holder else 'another run'}")  # fmt: skip
            holder, exists = self.current_holder()
            if not exists:
                continue  # released between our create and our read: try again at once
            reason = self.stale_reason(holder, max_age)
            if reason is None and break_lock and holder is not None:
                if holder.host == self.holder.host:
                    raise LockHeld(
                        f"{self.path} is held by {holder.describe()}, which is alive on this "
                        "host: --break-lock breaks only a lock whose holder is dead or remote"
                    )
                reason = "--break-lock given"
            if reason is not None:
                self._break(holder, reason)
                continue
            if time.monotonic() >= deadline:
                who = holder.describe() if holder else "a run whose lock is being written"
                raise LockHeld(
                    f"run date locked: {self.path} is held by {who}. Wait for it to end, pass "
                    "--wait-lock SECONDS to wait, or --break-lock if that run is dead "
                    "(see docs/segment.md)"
                )
            log.info("lock %s held by %s; waiting", self.path,
                     holder.describe() if holder else "another run")  # fmt: skip
            time.sleep(min(poll, max(0.0, deadline - time.monotonic())) or poll)

    def _break(self, holder: Holder | None, reason: str) -> None:
        """Move the stale lock aside, and put it back if what moved was not the one judged
        stale (another run broke it and took the lock in between)."""
        aside = f"{self.path}.broken-{uuid.uuid4().hex[:12]}"
        try:
            io.rename_path(self.spark, self.path, aside)
        except OSError:
            return  # gone already: someone else broke or released it
        moved = io.read_bytes(self.spark, aside)
        if holder is not None and moved is not None and Holder.parse(moved) != holder:
            io.create_new_file(self.spark, self.path, moved)  # a live lock: give it back
        else:
            log.warning("lock %s broken (%s): it was held by %s", self.path, reason,
                        holder.describe() if holder else "an unreadable holder")  # fmt: skip
        io.delete_path(self.spark, aside)

    def release(self) -> None:
        """Delete the lock file if it is still this run's."""
        if not self.held:
            return
        self.held = False
        holder, _ = self.current_holder()
        if holder is not None and holder.run_id == self.holder.run_id:
            io.delete_path(self.spark, self.path)
            log.info("lock %s released", self.path)
        else:
            log.warning("lock %s was no longer this run's at release: left as it is", self.path)

    def __enter__(self) -> WriterLock:
        return self if self.held else self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
