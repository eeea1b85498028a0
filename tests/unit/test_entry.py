"""The jobs' failure reporting: the root cause in one line, exit codes, the trace in a file."""

from __future__ import annotations

from pathlib import Path

import pytest

from spark_clustering.base import ProblemsError
from spark_clustering.jobs.entry import guarded, root_cause


class _Class:
    def __init__(self, name: str) -> None:
        self.name = name

    def getName(self) -> str:
        return self.name


class FakeJavaThrowable:
    """What Py4J gives for a Java exception: getClass().getName(), getMessage(), getCause()."""

    def __init__(self, name: str, message: str | None, cause: FakeJavaThrowable | None = None):
        self.name, self.message, self.cause = name, message, cause

    def getClass(self) -> _Class:
        return _Class(self.name)

    def getMessage(self) -> str | None:
        return self.message

    def getCause(self) -> FakeJavaThrowable | None:
        return self.cause


class FakePy4JJavaError(Exception):
    def __init__(self, java_exception: FakeJavaThrowable) -> None:
        super().__init__(
            "An error occurred while calling o42.parquet.\n"
            "\tat org.apache.spark.sql.Dataset.collect(Dataset.scala:1)"
        )
        self.java_exception = java_exception


def test_deepest_java_cause_class_and_message() -> None:
    deepest = FakeJavaThrowable(
        "java.lang.RuntimeException", "file:/x.parquet is not a Parquet file\nmore"
    )
    middle = FakeJavaThrowable("org.apache.spark.SparkException", "Job aborted", deepest)
    top = FakeJavaThrowable("org.apache.spark.SparkException", "Stage failed", middle)
    assert root_cause(FakePy4JJavaError(top)) == (
        "RuntimeException: file:/x.parquet is not a Parquet file"
    )


def test_python_worker_error_is_its_last_line() -> None:
    worker = FakeJavaThrowable(
        "org.apache.spark.api.python.PythonException",
        'Traceback (most recent call last):\n  File "w.py", line 3, in f\n    x = 1 / 0\n'
        "ZeroDivisionError: division by zero\n",
    )
    top = FakeJavaThrowable("org.apache.spark.SparkException", "Job aborted", worker)
    assert root_cause(FakePy4JJavaError(top)) == "ZeroDivisionError: division by zero"


def test_python_causes_and_value_errors() -> None:
    try:
        try:
            raise KeyError("slot")
        except KeyError as inner:
            raise RuntimeError("the reduction failed earlier") from inner
    except RuntimeError as exc:
        assert root_cause(exc) == "KeyError: 'slot'"
    problems = ProblemsError(["a is wrong", "b is wrong"], "2 problem(s)")
    assert root_cause(problems) == "2 problem(s):\n  - a is wrong\n  - b is wrong"
    assert root_cause(ValueError("k=3 needs at least 3")) == "k=3 needs at least 3"


def test_guarded_exit_codes_error_line_and_trace_file(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("SPARK_CLUSTERING_LOG_DIR", str(tmp_path))
    assert guarded("job", lambda: 7) == (7, 0)

    def bad_input() -> None:
        raise ValueError("featuresCol='features' has 1 rows; k=3 needs at least 3")

    assert guarded("job", bad_input) == (None, 2)
    err = capsys.readouterr().err
    assert err == "error: job: featuresCol='features' has 1 rows; k=3 needs at least 3\n"

    def broken() -> None:
        raise FakePy4JJavaError(FakeJavaThrowable("java.io.IOException", "disk full"))

    assert guarded("job", broken, ", previous outputs kept") == (None, 1)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "at org.apache" not in err
    assert err.startswith("error: job failed, previous outputs kept: IOException: disk full")
    trace = Path(err.rsplit("(full trace: ", 1)[1].strip().rstrip(")"))
    assert trace.parent == tmp_path
    text = trace.read_text()
    assert "Traceback" in text and "at org.apache.spark.sql.Dataset.collect" in text


@pytest.mark.parametrize("bad", [KeyboardInterrupt, SystemExit])
def test_guarded_lets_interrupts_through(bad) -> None:
    def stop() -> None:
        raise bad()

    with pytest.raises(bad):
        guarded("job", stop)
