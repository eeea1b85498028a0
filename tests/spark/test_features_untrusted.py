"""Input prepare cannot trust: future timestamps, duplicate transactions, NaN and infinite
amounts, nanosecond Parquet timestamps. Every count of ``report.json`` and the reference date
of ``preparation.json`` are checked against a pandas count of the same small input."""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spark_clustering.features.io import read_input, validate_input
from spark_clustering.features.prepare import prepare_features
from spark_clustering.features.spec import parse_spec
from spark_clustering.jobs.prepare import main

pytestmark = pytest.mark.spark

UTC = dt.timezone.utc
FUTURE = pd.Timestamp("2095-03-01 08:30:00", tz="UTC")
# the order duplicates are ranked in: the spec's needed columns, in required_columns' order
NEEDED = ["customer_id", "timestamp", "amount", "category", "channel", "country"]
LOW, HIGH = 0.0, 100_000.0


def _transactions(seed: int = 7, customers: int = 14) -> pd.DataFrame:
    """A few transactions per customer in 2025, then every kind of untrusted row."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2025-01-01", tz="UTC")
    rows = []
    for c in range(1, customers + 1):
        for _ in range(int(rng.integers(2, 6))):
            rows.append(
                {
                    "customer_id": c,
                    "timestamp": start + pd.Timedelta(seconds=int(rng.integers(0, 300 * 86400))),
                    "amount": round(float(rng.lognormal(3.0, 1.0)), 2),
                    "channel": str(rng.choice(["store", "web"])),
                    "category": str(rng.choice(["food", "home", "toys"])),
                    "country": "US" if c % 2 else "FR",
                }
            )
    df = pd.DataFrame(rows)
    df["customer_id"] = df["customer_id"].astype("Int64")
    df.insert(0, "transaction_id", np.arange(1, len(df) + 1, dtype="int64"))
    df.loc[[0, 7], "timestamp"] = FUTURE  # dated in 2095
    df.loc[df["customer_id"] == customers, "timestamp"] = FUTURE + pd.Timedelta(days=3)
    df.loc[[2, 11], "amount"] = np.nan
    df.loc[4, "amount"] = np.inf
    df.loc[9, "amount"] = -np.inf
    df.loc[5, "amount"] = None  # missing, not bad: pandas stores it as NaN too; set apart below
    df.loc[13, "amount"] = -3.0
    df.loc[15, "amount"] = 250_000.0
    df.loc[17, "customer_id"] = pd.NA
    # a third of the rows again, with the same transaction_id: some identical, some with another
    # channel that sorts before ("aaa": that copy is the one kept) or after ("zzz")
    copies = df.iloc[::3].copy()
    copies.loc[copies.index[1::3], "channel"] = "aaa"
    copies.loc[copies.index[2::3], "channel"] = "zzz"
    out = pd.concat([df, copies], ignore_index=True)
    return out.sample(frac=1.0, random_state=seed).reset_index(drop=True)


MISSING_AMOUNT_TID = 6  # transaction 6 (row 5) has a missing amount, not a NaN


def _write(pdf: pd.DataFrame, path, unit: str | None) -> None:
    """Parquet through pyarrow: ``unit=None`` is pandas' default (nanoseconds)."""
    table = pa.Table.from_pandas(pdf, preserve_index=False)
    # from_pandas turns NaN into null; keep NaN a NaN, and only the missing amount a null
    tids, amount = pdf["transaction_id"].tolist(), pdf["amount"].tolist()
    fixed = [None if t == MISSING_AMOUNT_TID else a for t, a in zip(tids, amount, strict=True)]
    table = table.set_column(
        table.schema.get_field_index("amount"), "amount", pa.array(fixed, pa.float64())
    )
    if unit is None:
        pq.write_table(table, path)
    else:
        pq.write_table(table, path, coerce_timestamps=unit, allow_truncated_timestamps=True)


def _hand(pdf: pd.DataFrame, now: pd.Timestamp) -> tuple[dict, pd.DataFrame]:
    """The report's input counts and the per-customer aggregates, counted with pandas."""
    df = pdf.copy()
    rows_read = len(df)
    # the kept duplicate is the smallest on the needed columns, nulls last
    dedup = df.sort_values(NEEDED, na_position="last", kind="mergesort").drop_duplicates(
        "transaction_id"
    )
    missing = dedup["transaction_id"] == MISSING_AMOUNT_TID
    amount = dedup["amount"].astype(float)
    non_finite = int((~np.isfinite(amount) & ~missing).sum())
    finite = amount.where(np.isfinite(amount))
    below, above = int((finite < LOW).sum()), int((finite > HIGH).sum())
    null_ids = int(dedup["customer_id"].isna().sum())
    future = dedup["timestamp"] > now
    kept_mask = dedup["customer_id"].notna() & ~future & ~((finite < LOW) | (finite > HIGH))
    kept = dedup[kept_mask].assign(amount=finite[kept_mask])
    ref = kept["timestamp"].max()

    def iso(ts: pd.Timestamp) -> str:
        return ts.tz_convert(None).to_pydatetime().isoformat(sep=" ")

    counts = {
        "rows_read": rows_read,
        "rows_kept": len(kept),
        "non_numeric": {},
        "non_finite": {"amount": non_finite},
        "null_ids": null_ids,
        "range_violations": {
            "amount": {
                "below_min": below,
                "above_max": above,
                "min": LOW,
                "max": HIGH,
                "action": "drop",
            }
        },
        "all_null_dropped": [],
        "duplicate_ids": 0,
        "duplicate_rows_dropped": rows_read - len(dedup),
        "duplicate_key": "transaction_id",
        "future_timestamps": {
            "rows": int(future.sum()),
            "latest": iso(dedup["timestamp"].max()),
            "cutoff_from": "run date",
            "action": "drop",
        },
        "max_timestamp": iso(ref),
    }
    g = kept.assign(customer_id=kept["customer_id"].astype(int)).groupby("customer_id")
    per_customer = pd.DataFrame(
        {
            "recency_days": (ref - g["timestamp"].max()).dt.total_seconds() / 86400.0,
            "frequency": g.size().astype(float),
            "monetary": g["amount"].sum(min_count=1),
            "tenure_days": (ref - g["timestamp"].min()).dt.total_seconds() / 86400.0,
            "distinct_channels": g["channel"].nunique().astype(float),
        }
    )
    return counts, per_customer


def _doc(path: str, out: str, **bad) -> dict:
    return {
        "input": {"path": path},
        "output": {"path": out},
        "transactions": {"max_categories": 20},
        "columns": {"categorical": ["country"]},
        "bad_input": {
            "non_numeric": "null",
            "null_ids": "drop",
            "ranges": {"amount": {"min": LOW, "max": HIGH, "action": "drop"}},
            **bad,
        },
        "analysis": {"enabled": False, "charts": False},
    }


def _toml(doc: dict) -> str:
    lines = []
    for table, body in doc.items():
        lines.append(f"[{table}]")
        for key, value in body.items():
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)


@pytest.fixture(scope="module")
def untrusted() -> pd.DataFrame:
    return _transactions()


def test_every_count_of_the_job_report_matches_a_hand_count(spark, untrusted, tmp_path):
    """pandas' default Parquet (nanosecond timestamps) through the job: report.json and
    preparation.json say exactly what a pandas count of the same file says."""
    data = tmp_path / "tx.parquet"
    _write(untrusted, data, None)
    assert pq.read_schema(data).field("timestamp").type == pa.timestamp("ns", tz="UTC")
    out = tmp_path / "prepared"
    config = tmp_path / "prepare.toml"
    config.write_text(_toml(_doc(str(data), str(out))))
    before = dt.datetime.now(UTC)
    assert main(["--config", str(config), "--gpu", "off"]) == 0
    after = dt.datetime.now(UTC)
    counts, per_customer = _hand(untrusted, pd.Timestamp(before))
    report = json.loads((out / "report" / "report.json").read_text())
    meta = json.loads((out / "preparation.json").read_text())
    got = report["input"]
    cutoff = dt.datetime.fromisoformat(got["future_timestamps"].pop("cutoff")).replace(tzinfo=UTC)
    assert before <= cutoff <= after
    assert got == counts
    # the untrusted rows really are there, so every count above is exercised
    assert counts["duplicate_rows_dropped"] >= 15 and counts["future_timestamps"]["rows"] >= 3
    assert counts["non_finite"]["amount"] == 4 and counts["null_ids"] == 1
    assert report["customers"] == len(per_customer) < untrusted["customer_id"].nunique()
    assert report["aggregation"]["reference_date"] == meta["reference_date"]
    assert meta["reference_date"] == counts["max_timestamp"] < "2026"


def test_aggregates_come_from_the_kept_rows_only(spark, untrusted, tmp_path):
    """Duplicates no longer inflate frequency and monetary; recency is measured to the latest
    trusted timestamp (microsecond Parquet here, so only the rules are tested)."""
    data = tmp_path / "tx.parquet"
    _write(untrusted, data, "us")
    spec = parse_spec(_doc(str(data), str(tmp_path / "out")))
    now = pd.Timestamp.now(tz="UTC")
    prepared = prepare_features(spark, spec)
    try:
        table = prepared.customers
        assert table is not None
        got = table.toPandas().set_index("customer_id").sort_index()
    finally:
        prepared.unpersist()
    _, expected = _hand(untrusted, now)
    got.index = got.index.astype(int)
    pd.testing.assert_frame_equal(
        got[list(expected.columns)], expected, check_exact=False, rtol=1e-9, check_names=False
    )


def _tx(spark, rows, extra: str = ""):
    schema = "transaction_id long, customer_id long, timestamp timestamp, amount double" + extra
    return spark.createDataFrame(rows, schema)


def _spec(transactions: dict | None = None, **bad):
    doc = {
        "input": {"path": "unused"},
        "output": {"path": "unused"},
        "transactions": {
            "aggregates": ["recency", "frequency", "monetary"],
            **(transactions or {}),
        },
        "bad_input": {"ranges": {"amount": {"min": LOW, "max": HIGH, "action": "drop"}}, **bad},
    }
    doc["transactions"].update(transactions or {})
    return parse_spec(doc)


NOW = dt.datetime(2026, 1, 1, tzinfo=UTC)


def _ts(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


@pytest.fixture(scope="module")
def future_rows(spark):
    return _tx(
        spark,
        [
            (1, 1, _ts(2025, 5, 1), 10.0),
            (2, 1, _ts(2095, 1, 1), 20.0),
            (3, 2, _ts(2025, 12, 31, 23, 59, 59), 30.0),
            (4, 2, _ts(2031, 6, 1), 40.0),
            (5, 3, None, 50.0),
        ],
    )


def test_future_timestamps_error_names_the_rule_the_count_and_the_latest(future_rows):
    with pytest.raises(ValueError) as err:
        validate_input(future_rows, _spec(future_timestamps="error"), now=NOW)
    text = str(err.value)
    assert "column 'timestamp' has 2 timestamp(s) after the run date 2026-01-01 00:00:00" in text
    assert "the latest 2095-01-01 00:00:00" in text
    assert "bad_input.future_timestamps = 'drop' or 'clip'" in text


def test_future_timestamps_are_dropped_by_default_and_never_the_reference(future_rows):
    out, report, _ = validate_input(future_rows, _spec(), now=NOW)
    # the amounts tell the rows apart (transaction_id is only used to find duplicates)
    assert sorted(r["amount"] for r in out.collect()) == [10.0, 30.0, 50.0]
    assert report.future_timestamps == {
        "rows": 2,
        "latest": "2095-01-01 00:00:00",
        "cutoff": "2026-01-01 00:00:00",
        "cutoff_from": "run date",
        "action": "drop",
    }
    assert report.max_timestamp == "2025-12-31 23:59:59"
    assert report.rows_read == 5 and report.rows_kept == 3 == out.count()


def test_future_timestamps_clipped_to_the_configured_reference_date(future_rows):
    spec = _spec(future_timestamps="clip", transactions={"reference_date": "2025-06-01"})
    out, report, _ = validate_input(future_rows, spec, now=NOW)
    from pyspark.sql import functions as F

    micros = out.select("amount", F.unix_micros("timestamp").alias("us")).collect()
    got = {r["amount"]: r["us"] for r in micros}
    ref, may = (int(_ts(2025, m, 1).timestamp() * 1_000_000) for m in (6, 5))
    assert got == {10.0: may, 20.0: ref, 30.0: ref, 40.0: ref, 50.0: None}
    assert report.future_timestamps["rows"] == 3
    assert report.future_timestamps["cutoff_from"] == "reference_date"
    assert report.max_timestamp == "2025-06-01 00:00:00" and report.rows_kept == 5


@pytest.fixture(scope="module")
def duplicated(spark):
    rows = [
        (1, 1, _ts(2025, 1, 1), 10.0, "web", "s1"),
        (1, 1, _ts(2025, 1, 1), 10.0, "store", "s2"),  # same id, smaller channel: kept
        (1, 1, _ts(2025, 1, 1), 10.0, "web", "s1"),
        (2, 1, _ts(2025, 2, 1), 5.0, "web", "s1"),
        (3, 2, _ts(2025, 3, 1), 7.0, "web", "s1"),
        (3, 2, _ts(2025, 3, 1), 7.0, "web", "s9"),  # differs only in an unused column
        (None, 2, _ts(2025, 4, 1), 1.0, "web", "s1"),
        (None, 2, _ts(2025, 4, 1), 1.0, "web", "s1"),  # no transaction id: whole rows compared?
    ]
    return _tx(spark, rows, ", channel string, store string")


def _dup_spec(**bad):
    doc = {
        "input": {"path": "unused"},
        "output": {"path": "unused"},
        "transactions": {"aggregates": ["frequency", "monetary", "distinct_channels"]},
        "bad_input": bad,
    }
    return parse_spec(doc)


def _rows(df) -> list[tuple]:
    return sorted((tuple(r) for r in df.collect()), key=repr)


def test_duplicate_transactions_keep_the_same_row_whatever_the_layout(duplicated):
    spec = _dup_spec()
    out, report, _ = validate_input(duplicated, spec)
    assert report.duplicate_key == "transaction_id"
    assert report.duplicate_rows_dropped == 3 and report.rows_kept == 5 == out.count()
    expected = [
        (1, 5.0, "web"),
        (1, 10.0, "store"),
        (2, 1.0, "web"),
        (2, 1.0, "web"),
        (2, 7.0, "web"),
    ]
    assert sorted((r[0], r[1], r[2]) for r in _rows(out)) == expected
    for layout in (
        duplicated.repartition(3),
        duplicated.orderBy("channel", ascending=False).coalesce(1),
        duplicated.repartition(5, "store"),
    ):
        again, _, _ = validate_input(layout, spec)
        assert _rows(again) == _rows(out)


def test_duplicate_transactions_by_whole_rows_or_kept_or_refused(duplicated):
    spec = parse_spec(
        {
            "input": {"path": "unused"},
            "output": {"path": "unused"},
            "transactions": {
                "aggregates": ["frequency", "monetary", "distinct_channels"],
                "transaction_id_col": "",
            },
        }
    )
    out, report, _ = validate_input(duplicated, spec)
    # identical in every column (the store too): the third row and the last one
    assert report.duplicate_key == "all columns"
    assert report.duplicate_rows_dropped == 2 and out.count() == report.rows_kept == 6
    out, report, _ = validate_input(duplicated.drop("transaction_id"), _dup_spec())
    assert report.duplicate_key == "all columns" and report.duplicate_rows_dropped == 2
    out, report, _ = validate_input(duplicated, _dup_spec(duplicate_transactions="keep"))
    assert report.duplicate_rows_dropped == 0 and report.duplicate_key is None
    assert out.count() == report.rows_kept == 8
    with pytest.raises(ValueError, match=r"3 duplicate transaction row\(s\) \(the same "):
        validate_input(duplicated, _dup_spec(duplicate_transactions="error"))


def test_a_named_transaction_id_column_must_exist(duplicated):
    spec = parse_spec(
        {
            "input": {"path": "unused"},
            "output": {"path": "unused"},
            "transactions": {"aggregates": ["frequency"], "transaction_id_col": "transactionid"},
        }
    )
    with pytest.raises(ValueError, match=r"column 'transactionid' \(id\) is missing \(did you"):
        validate_input(duplicated, spec)


@pytest.fixture(scope="module")
def non_finite(spark):
    rows = [
        (1, 1, _ts(2025, 1, 1), 1.0),
        (2, 1, _ts(2025, 1, 2), math.nan),
        (3, 1, _ts(2025, 1, 3), math.inf),
        (4, 2, _ts(2025, 1, 4), -math.inf),
        (5, 2, _ts(2025, 1, 5), 5e5),
        (6, 2, _ts(2025, 1, 6), -1.0),
        (7, 2, _ts(2025, 1, 7), None),
    ]
    return _tx(spark, rows)


def test_nan_and_inf_amounts_are_refused_by_default(non_finite):
    with pytest.raises(ValueError, match=r"column 'amount' has 3 NaN or infinite value\(s\)"):
        validate_input(non_finite, _spec(), now=NOW)


def test_nan_and_inf_amounts_are_counted_as_such_not_as_out_of_range(non_finite):
    out, report, _ = validate_input(non_finite, _spec(non_numeric="null"), now=NOW)
    assert report.non_finite == {"amount": 3} and report.non_numeric == {}
    violations = report.range_violations["amount"]
    assert (violations["below_min"], violations["above_max"]) == (1, 1)
    from pyspark.sql import functions as F

    days = out.select(F.dayofmonth("timestamp").alias("day"), "amount").collect()
    got = {r["day"]: r["amount"] for r in days}  # the day is the transaction_id
    assert got == {1: 1.0, 2: None, 3: None, 4: None, 7: None}
    assert report.rows_kept == 5


def test_rows_kept_of_a_per_customer_table_counts_duplicate_ids(spark, tmp_path):
    df = spark.createDataFrame(
        [(1, 3.0), (1, 2.0), (2, -5.0), (3, 1.0), (4, None), (None, 2.0)],
        "id long, income double",
    )
    doc = {
        "input": {"path": "unused", "kind": "customers", "id_col": "id"},
        "output": {"path": "unused"},
        "columns": {"numeric": ["income"]},
        "bad_input": {
            "null_ids": "drop",
            "duplicate_ids": "keep_one",
            "ranges": {"income": {"min": 0.0, "action": "drop"}},
        },
        "analysis": {"enabled": False},
        "clean": {"drop_constant": False},
    }
    prepared = prepare_features(spark, parse_spec(doc), df)
    try:
        got = prepared.report["input"]
        assert (got["rows_read"], got["null_ids"], got["duplicate_rows_dropped"]) == (6, 1, 1)
        assert got["range_violations"]["income"]["below_min"] == 1
        assert got["rows_kept"] == 3 == prepared.report["customers"]
        assert got["duplicate_key"] is None and got["future_timestamps"] == {}
    finally:
        prepared.unpersist()


def test_parquet_timestamps_of_every_unit_are_read(spark, tmp_path):
    """Nanoseconds (UTC-adjusted and wall-clock), milliseconds with a time zone, microseconds:
    one folder of part files, as Spark or a pandas export would leave it."""
    instants = [
        dt.datetime(2024, 3, 5, 12, 30, 15, 123456, tzinfo=UTC),
        dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ]
    ns = [int((t - dt.datetime(1970, 1, 1, tzinfo=UTC)) / dt.timedelta(microseconds=1)) * 1000
          + 789 for t in instants]  # fmt: skip
    paris = [t.astimezone(dt.timezone(dt.timedelta(hours=1))) for t in instants]
    folder = tmp_path / "parts"
    folder.mkdir()
    for i in range(2):
        table = pa.table(
            {
                "id": pa.array([i], pa.int64()),
                "ts_ns_utc": pa.array([ns[i]], pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
                "ts_ns_wall": pa.array([ns[i]], pa.int64()).cast(pa.timestamp("ns")),
                "ts_ms_tz": pa.array(
                    [paris[i].replace(microsecond=paris[i].microsecond // 1000 * 1000)],
                    pa.timestamp("ms", tz="Europe/Paris"),
                ),
                "ts_us": pa.array([instants[i]], pa.timestamp("us", tz="UTC")),
            }
        )
        pq.write_table(table, folder / f"part-{i}.parquet")
    (folder / "_SUCCESS").write_text("")
    spec = parse_spec({"input": {"path": str(folder)}, "output": {"path": "unused"}})
    df = read_input(spark, spec.input)
    from pyspark.sql import functions as F

    cols = ["ts_ns_utc", "ts_ns_wall", "ts_ms_tz", "ts_us"]
    # epoch microseconds: independent of the driver's time zone
    got = {
        r["id"]: [r[c] for c in cols]
        for r in df.select(
            "id", *[F.unix_micros(F.col(c).cast("timestamp")).alias(c) for c in cols]
        ).collect()
    }
    for i, t in enumerate(instants):
        micros = int((t - dt.datetime(1970, 1, 1, tzinfo=UTC)) / dt.timedelta(microseconds=1))
        ms = micros // 1000 * 1000
        # nanoseconds truncated to Spark's microseconds; the wall-clock column read in the
        # session's time zone (UTC in the tests)
        assert got[i] == [micros, micros, ms, micros]


def test_amounts_beyond_the_exact_sum_range_are_refused_unless_a_rule_handles_them(spark):
    """Amounts are summed as decimal(18,6), exact below 1e12 in magnitude: a larger one is
    refused before any aggregation, unless a range rule drops, clips or nulls it."""
    rows = [
        (1, 1, _ts(2025, 1, 1), 10.0),
        (2, 1, _ts(2025, 1, 2), -3e12),
        (3, 2, _ts(2025, 1, 3), 2e12),
    ]
    df = _tx(spark, rows)
    spec = _spec()
    unbounded = replace(spec, bad_input=replace(spec.bad_input, ranges=()))
    with pytest.raises(ValueError) as err:
        validate_input(df, unbounded, now=NOW)
    text = str(err.value)
    assert "column 'amount' has 2 amount(s) of magnitude >= 1e+12" in text
    assert "decimal(18,6)" in text and "bad_input.ranges rule for 'amount'" in text
    clipped = _spec(ranges={"amount": {"min": -1e6, "max": 1e6, "action": "clip"}})
    out, _, _ = validate_input(df, clipped, now=NOW)
    assert sorted(r["amount"] for r in out.collect()) == [-1e6, 10.0, 1e6]
    nulled = _spec(ranges={"amount": {"min": 0.0, "max": 1e6, "action": "null"}})
    assert validate_input(df, nulled, now=NOW)[0].count() == 3


def test_monetary_is_an_exact_sum_whatever_the_order(spark):
    """0.1 + 0.2 + 0.3 in doubles depends on the order; as decimals it is 0.6 in any order."""
    from spark_clustering.features.aggregate import aggregate_transactions

    spec = _spec()
    amounts = [0.1, 0.2, 0.3, 1e-7, 123456.789]
    got = set()
    for order in ([0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 0, 4, 1, 3]):
        rows = [(i, 1, _ts(2025, 1, 1 + i), amounts[i]) for i in order]
        df = spark.createDataFrame(
            rows, "transaction_id long, customer_id long, timestamp timestamp, amount double"
        ).repartition(3)
        agg, _ = aggregate_transactions(df, "customer_id", spec.transactions)
        got.add(agg.first()["monetary"])
    assert got == {123457.389}  # 1e-7 is below the sixth decimal place: rounded away
