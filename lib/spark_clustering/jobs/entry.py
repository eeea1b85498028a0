"""What every job's command line shares: the ``main(argv)`` of its spark-submit entry point and
the mapping of failures to exit codes (0 done, 2 bad config or bad input, 1 any other failure).

A failure reaches the user as one line on stderr, ``error: <job>: <cause>``, where the cause is
the root of the failure: the message of a ``ValueError``, or for a Spark failure the class and
message of the deepest Java exception (a Python worker's error: its last line), never a Java or
Python stack trace. The full trace goes to the log: the ``spark_clustering.jobs`` logger at DEBUG
(``--log-level DEBUG``), and, for a failure other than bad input, to a file named on the error
line, ``$SPARK_CLUSTERING_LOG_DIR/spark-clustering-<job>-<pid>.trace`` (the system's temporary
folder when the variable is unset).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger("spark_clustering.jobs")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: the longest cause printed on the error line (a Java message can hold a whole query plan)
MAX_CAUSE = 600

#: Spark's loggers that print a failed task's Java stack trace on the console, as the job fails;
#: the trace is in the exception the job reports (and in its trace file), so they are quietened
#: on the driver while a job runs
TASK_FAILURE_LOGGERS = (
    "org.apache.spark.executor.Executor",
    "org.apache.spark.scheduler.TaskSetManager",
    "org.apache.spark.scheduler.TaskSchedulerImpl",
    "org.apache.spark.sql.execution.datasources.FileFormatWriter",
    "org.apache.spark.sql.execution.datasources.parquet.ParquetFileFormat",
)


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
    return run_reported(prog, run, args)


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


def add_subcommand(
    subparsers: Any,
    name: str,
    help_text: str,
    doc: str | None,
    arguments: Callable[[argparse.ArgumentParser], Any],
    run: Callable[[argparse.Namespace], int],
) -> argparse.ArgumentParser:
    """Register a ``spark-clustering`` sub-command: its help line, its module docstring as the
    description (examples kept as written), its arguments and the function that runs it."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=help_text,
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    arguments(parser)
    parser.set_defaults(func=run)
    return parser


def run_reported(job: str, run: Callable[[argparse.Namespace], int], args: Any) -> int:
    """``run(args)``, any exception it lets through reported as :func:`report_failure` does
    (the last guard: jobs report their own failures with their own wording first)."""
    try:
        return int(run(args) or 0)
    except Exception as exc:
        return report_failure(job, exc)


def start_spark(app_name: str, **kwargs: Any) -> Any:
    """The job's SparkSession (:func:`spark_clustering.session.get_spark`), with failed tasks'
    Java traces kept off the console (:func:`quiet_task_failures`)."""
    from spark_clustering import session

    spark = session.get_spark(app_name, **kwargs)
    quiet_task_failures(spark)
    return spark


# --------------------------------------------------------------------------- root causes


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_CAUSE else text[: MAX_CAUSE - 3] + "..."


def _python_error_line(text: str) -> str | None:
    """The last ``SomeError: message`` line of a Python traceback printed in ``text``."""
    if "Traceback (most recent call last)" not in text:
        return None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b", line):
            return line
    return None


def _java_chain(java_exc: Any) -> list[tuple[str, str]]:
    """``(class name, message)`` of a Java throwable and each of its causes, outermost first."""
    chain: list[tuple[str, str]] = []
    seen = 0
    current = java_exc
    while current is not None and seen < 50:
        try:
            name = str(current.getClass().getName())
            message = current.getMessage()
            chain.append((name, "" if message is None else str(message)))
            current = current.getCause()
        except Exception:  # a Py4J call on a closed gateway: keep what was read
            break
        seen += 1
    return chain


def _java_cause(chain: list[tuple[str, str]]) -> str:
    """The deepest Java exception as ``Class: message``; a Python worker's error as its line."""
    for _, message in reversed(chain):
        line = _python_error_line(message)
        if line:
            return line
    for name, message in reversed(chain):
        if message.strip():
            first = message.strip().splitlines()[0]
            return f"{name.rsplit('.', 1)[-1]}: {first}"
    return chain[-1][0].rsplit(".", 1)[-1] if chain else "a Java exception"


def root_cause(exc: BaseException) -> str:
    """One line saying why ``exc`` happened, without a stack trace.

    - a ``ValueError`` raised by this package (bad config, bad input): its message;
    - a Py4J ``Py4JJavaError`` or a PySpark captured exception (``AnalysisException``,
      ``PythonException``, ...): the class and message of the deepest Java cause, or, for an
      error raised in a Python worker, the worker's ``SomeError: message`` line;
    - any other exception: the deepest ``__cause__``, as ``TypeName: message``.
    """
    is_spark = hasattr(exc, "java_exception") or hasattr(exc, "_origin")
    if isinstance(exc, ValueError) and not is_spark and "Traceback (most" not in str(exc):
        # ours (bad config, bad input): said as it was raised; a ProblemsError keeps its
        # '  - problem' lines on purpose
        return str(exc).strip()
    # the deepest Python cause first: wrappers (RuntimeError("... failed earlier")) say less
    inner: BaseException = exc
    for _ in range(50):
        nxt = inner.__cause__
        if nxt is None:
            break
        inner = nxt
    java = getattr(inner, "java_exception", None)
    if java is None and hasattr(inner, "_origin"):
        java = inner._origin  # PySpark's CapturedException keeps the Java throwable here
    if java is not None:
        chain = _java_chain(java)
        if chain:
            return _one_line(_java_cause(chain))
    text = str(inner)
    line = _python_error_line(text)
    if line:
        return _one_line(line)
    if "JVM stacktrace:" in text:
        text = text.split("JVM stacktrace:", 1)[0]
    text = text.strip()
    if isinstance(inner, ValueError):
        return _one_line(text)
    name = type(inner).__name__
    first = text.splitlines()[0] if text else ""
    return _one_line(f"{name}: {first}" if first else name)


def trace_file(job: str) -> str:
    """Where the full trace of a failed ``job`` is written (see the module docstring)."""
    folder = os.environ.get("SPARK_CLUSTERING_LOG_DIR") or tempfile.gettempdir()
    return os.path.join(folder, f"spark-clustering-{job}-{os.getpid()}.trace")


def _write_trace(job: str, exc: BaseException) -> str | None:
    path = trace_file(job)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            # a Py4JJavaError's text holds the Java trace, with every cause
            fh.write("".join(traceback.format_exception(exc)))
    except OSError as err:
        log.debug("could not write the trace to %s: %s", path, err)
        return None
    return path


def report_failure(job: str, exc: BaseException, kept: str = "") -> int:
    """Print ``error: <job>: <cause>`` on stderr, log the full trace; the exit code (2 for
    bad input, a ``ValueError`` of ours or of Spark's analysis, else 1)."""
    from spark_clustering.redact import redact_text

    cause = redact_text(root_cause(exc))
    log.debug("%s failed%s", job, kept, exc_info=exc)
    if isinstance(exc, ValueError):
        log.error("%s failed%s: %s", job, kept, cause.splitlines()[0])
        print(f"error: {job}: {cause}", file=sys.stderr)
        return 2
    path = _write_trace(job, exc)
    where = f" (full trace: {path})" if path else ""
    log.error("%s failed%s: %s%s", job, kept, cause, where)
    print(f"error: {job} failed{kept}: {cause}{where}", file=sys.stderr)
    return 1


def quiet_task_failures(spark: Any) -> None:
    """Stop the driver's log4j from printing failed tasks' Java traces on the console.

    The failure still reaches the job as an exception, reported by :func:`report_failure` in
    one line with the full trace in the log; ``SPARK_CLUSTERING_SPARK_LOG_LEVEL=DEBUG`` (or
    INFO) keeps Spark's own logging as it is.
    """
    if os.environ.get("SPARK_CLUSTERING_SPARK_LOG_LEVEL", "WARN").upper() in ("DEBUG", "INFO"):
        return
    try:
        jvm = spark.sparkContext._jvm
        level = jvm.org.apache.logging.log4j.Level.OFF
        for name in TASK_FAILURE_LOGGERS:
            jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(name, level)
    except Exception as exc:  # logging setup only; the job runs the same
        log.debug("could not quieten Spark's task failure logs: %s", exc)


def guarded(job: str, action: Callable[[], T], kept: str = "") -> tuple[T | None, int]:
    """``(action(), 0)``; on a failure ``(None, code)``: 2 for ``ValueError`` (bad input), 1
    for any other exception, reported by :func:`report_failure` (one ``error:`` line, the full
    trace in the log). ``kept`` says what a failure leaves, e.g. ``", previous outputs kept"``."""
    try:
        return action(), 0
    except Exception as exc:
        return None, report_failure(job, exc, kept)
