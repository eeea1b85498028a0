"""spark_clustering.redact: credential-like keys, URL user-info, JDBC and query passwords, AWS
key ids; and its use by tracking (one function for both)."""

from __future__ import annotations

import logging

import pytest

from spark_clustering.redact import REDACTED, is_secret_key, redact, redact_text

SECRET_KEYS = [
    "password",
    "PASSWORD",
    "db_password",
    "passwd",
    "sfPassword",
    "secret",
    "client_secret",
    "token",
    "api_token",
    "apiKey",
    "api-key",
    "fs.s3a.secret.key",
    "fs.s3a.access.key",
    "fs.s3a.session.token",
    "spark.hadoop.fs.s3a.secret.key",
    "aws_secret_access_key",
    "aws_session_token",
    "credential",
    "credentials",
    "private_key",
    "privateKey",
    "authorization",
]
PLAIN_KEYS = [
    "header",
    "user",
    "url",
    "dbtable",
    "inferSchema",
    "fs.s3a.endpoint",
    "fs.s3a.aws.credentials.provider",
    "private_key_file",
    "customer_id",
]


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_secret_keys(key):
    assert is_secret_key(key)
    assert redact({key: "s3cr3t-value"}) == {key: REDACTED}


@pytest.mark.parametrize("key", PLAIN_KEYS)
def test_plain_keys_are_kept(key):
    assert not is_secret_key(key)
    assert redact({key: "value"}) == {key: "value"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("jdbc:postgresql://db:5432/shop?user=ana&password=hunter2&ssl=true",
         f"jdbc:postgresql://db:5432/shop?user=ana&password={REDACTED}&ssl=true"),
        ("jdbc:sqlserver://db:1433;databaseName=shop;user=sa;password=hunter2;encrypt=true",
         f"jdbc:sqlserver://db:1433;databaseName=shop;user=sa;password={REDACTED};encrypt=true"),
        ("jdbc:mysql://ana:hunter2@db:3306/shop", f"jdbc:mysql://{REDACTED}@db:3306/shop"),
        ("https://ghp_tokenvalue@github.com/x.git", f"https://{REDACTED}@github.com/x.git"),
        ("s3a://AKIAABCDEFGHIJKLMNOP:hunter2@bucket/p", f"s3a://{REDACTED}@bucket/p"),
        ("key id AKIAABCDEFGHIJKLMNOP in a message", f"key id {REDACTED} in a message"),
        ("--conf spark.hadoop.fs.s3a.secret.key=hunter2 --conf x=1",
         f"--conf spark.hadoop.fs.s3a.secret.key={REDACTED} --conf x=1"),
        ("http://mlflow:5000/api?token=abc", f"http://mlflow:5000/api?token={REDACTED}"),
        # nothing secret: unchanged
        ("s3://bucket/raw/2026-11/", "s3://bucket/raw/2026-11/"),
        ("eps=0.31 minPoints=20 path=/data/x", "eps=0.31 minPoints=20 path=/data/x"),
        ("user@example.com wrote", "user@example.com wrote"),
    ],
)  # fmt: skip
def test_redact_text(text, expected):
    assert redact_text(text) == expected
    assert "hunter2" not in redact_text(text)


def test_redact_walks_nested_values_and_keeps_the_shape():
    spec = {
        "input": {
            "path": "s3a://AKIAABCDEFGHIJKLMNOP:hunter2@bucket/tx",
            "options": {
                "url": "jdbc:postgresql://db/shop?password=hunter2",
                "password": "hunter2",
                "fs.s3a.secret.key": "hunter2",
                "header": "true",
            },
        },
        "ranges": [{"column": "amount", "min": 0.0, "token": {"nested": "hunter2"}}],
        "k": 3,
        "enabled": True,
        "nothing": None,
    }
    clean = redact(spec)
    assert "hunter2" not in repr(clean) and "AKIA" not in repr(clean)
    assert clean["input"]["options"]["header"] == "true"
    assert clean["input"]["options"]["password"] == REDACTED
    assert clean["ranges"][0] == {"column": "amount", "min": 0.0, "token": REDACTED}
    assert (clean["k"], clean["enabled"], clean["nothing"]) == (3, True, None)
    assert spec["input"]["options"]["password"] == "hunter2"  # a copy: the input is untouched
    assert redact(redact(spec)) == clean  # idempotent


def test_tracking_uses_the_same_function():
    from spark_clustering import tracking
    from spark_clustering.tracking import names

    assert names.redact_text is redact_text and names.is_secret_key is is_secret_key
    with tracking.trial("exp", "redacted", backend="none") as t:
        t.log_parameters({"fs.s3a.secret.key": "hunter2", "url": "jdbc:x://h;password=hunter2"})
        t.set_tags({"api_token": "hunter2"})
        t.log_input("raw", "s3a://ana:hunter2@bucket/raw")
    assert "hunter2" not in repr(t.root.logged_params) and "hunter2" not in repr(t.user_tags)


def test_job_logs_and_error_lines_are_redacted(caplog, capsys):
    from spark_clustering.jobs.entry import RedactingFilter, guarded

    def fails() -> None:
        raise RuntimeError("could not read jdbc:mysql://ana:hunter2@db/shop?password=hunter2")

    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())
    caplog.handler.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO):
        assert guarded("segment", fails) == (None, 1)
        logging.getLogger("spark_clustering.test").info("secret key=%s", "fs.s3a.secret.key=x1")
    err = capsys.readouterr().err
    assert "hunter2" not in err and "error: segment failed" in err
    text = caplog.text
    assert "hunter2" not in text and "x1" not in text and REDACTED in text
