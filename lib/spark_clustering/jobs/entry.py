"""What every job's command line shares: the ``main(argv)`` of its spark-submit entry point and
the mapping of failures to exit codes (0 done, 2 bad config or bad input, 1 any other failure),
with the error on stderr and in the log."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger("spark_clustering.jobs")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def job_main(
    prog: str,
    description: str | None,
    add_arguments: Callable[[argparse.ArgumentParser], Any],
    run: Callable[[argparse.Namespace], int],
    argv: Sequence[str] | None,
) -> int:
    """Parse ``argv`` with the job's arguments, log at INFO unless logging is set up, run."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_arguments(parser)
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    return run_reporting_setup_errors(run, args)


def run_reporting_setup_errors(run: Callable[[argparse.Namespace], int], args: Any) -> int:
    """``run(args)``, with a Spark set-up that cannot run the job (unreachable master, executors
    without the package or without numpy) reported as one ``error:`` line and exit code 2."""
    from spark_clustering.session import SparkSetupError

    try:
        return run(args)
    except SparkSetupError as exc:
        log.debug("Spark set-up error", exc_info=True)
        print(f"error: {exc}", file=sys.stderr)
        return 2


class RedactingFilter(logging.Filter):
    """Removes credentials from every record a handler writes (messages, arguments, traces)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from spark_clustering.redact import redact_text

        try:
            message = record.getMessage()
        except Exception:  # a bad format string: the handler reports it, not the filter
            return True
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact_text(text)
        return True


def guarded(job: str, action: Callable[[], T], kept: str = "") -> tuple[T | None, int]:
    """``(action(), 0)``; on ``ValueError`` (bad input) ``(None, 2)``, on any other exception
    ``(None, 1)``, the error logged and printed as ``error: <job>...``. ``kept`` says what a
    failure leaves, e.g. ``", previous outputs kept"``."""
    from spark_clustering.redact import redact_text

    try:
        return action(), 0
    except ValueError as exc:
        log.error("%s failed%s: %s", job, kept, redact_text(str(exc)))
        print(f"error: {job}: {redact_text(str(exc))}", file=sys.stderr)
        return None, 2
    except Exception as exc:
        log.error("%s failed%s", job, kept, exc_info=True)
        print(f"error: {job} failed ({type(exc).__name__}: {redact_text(str(exc))})",
              file=sys.stderr)  # fmt: skip
        return None, 1
