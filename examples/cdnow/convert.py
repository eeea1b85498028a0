"""CDNOW's real customer transactions, converted to the transactions the prepare job reads.

The CDNOW master data set (every purchase of the 23,570 customers who first bought at the online
music shop CDNOW in the first quarter of 1997, up to June 1998: 69,659 transactions; Fader, Hardie
and Lee, 2005) is shipped inside the PyPI package ``lifetimes`` (0.11.3, as
``lifetimes/datasets/CDNOW_master.txt``). It is found through the package's installed file list;
the package is never imported (``pip install --no-deps lifetimes`` is enough).

Columns written (Parquet): ``customer_id`` (long), ``transaction_id`` (string: customer and line
number), ``timestamp`` (the purchase date at noon, UTC), ``amount`` (the purchase's dollar value)
and ``quantity`` (CDs bought). ``--every N`` keeps the customers whose id is a multiple of N (all of
their transactions): a smaller, still real, sample for tests.

    python examples/cdnow/convert.py --output data/cdnow/transactions [--every 4]
    spark-clustering prepare --config examples/cdnow/prepare.toml
    spark-clustering segment --config examples/cdnow/segment.toml
"""

from __future__ import annotations

import argparse
import os
from importlib import metadata
from typing import Any

FILE = "lifetimes/datasets/CDNOW_master.txt"
CUSTOMERS = 23_570
TRANSACTIONS = 69_659


def source_path() -> str:
    """The CDNOW_master.txt the installed ``lifetimes`` package ships."""
    try:
        dist = metadata.distribution("lifetimes")
    except metadata.PackageNotFoundError:
        raise SystemExit(
            "the CDNOW data ships in the 'lifetimes' package: "
            "pip install --no-deps lifetimes==0.11.3"
        ) from None
    path = str(dist.locate_file(FILE))
    if not os.path.exists(path):
        raise SystemExit(f"{path} is missing from the installed 'lifetimes' package")
    return path


def read(every: int = 1) -> Any:
    """The transactions as a pandas DataFrame in the prepare job's columns."""
    import pandas as pd

    raw = pd.read_csv(source_path(), sep=r"\s+", header=0,
                      names=["customer_id", "date", "quantity", "amount"],
                      dtype={"customer_id": "int64", "date": "str", "quantity": "int64",
                             "amount": "float64"})  # fmt: skip
    raw["transaction_id"] = [f"{c}-{i}" for i, c in enumerate(raw["customer_id"])]
    raw["timestamp"] = pd.to_datetime(raw["date"], format="%Y%m%d") + pd.Timedelta(hours=12)
    if every > 1:
        raw = raw[raw["customer_id"] % every == 0]
    return raw[["customer_id", "transaction_id", "timestamp", "amount", "quantity"]].reset_index(
        drop=True
    )


def convert(spark: Any, output: str, every: int = 1) -> int:
    """Write the transactions as Parquet under ``output``; returns the rows written."""
    table = read(every)
    df = spark.createDataFrame(
        table, "customer_id long, transaction_id string, timestamp timestamp, amount double, "
        "quantity long",
    )  # fmt: skip
    df.repartition(4).write.mode("overwrite").parquet(output)
    return len(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="data/cdnow/transactions")
    parser.add_argument("--every", type=int, default=1, help="keep customer ids divisible by N")
    args = parser.parse_args()
    from spark_clustering.session import get_spark

    spark = get_spark("cdnow-convert")
    rows = convert(spark, args.output, args.every)
    print(f"wrote {rows} CDNOW transactions to {args.output}")


if __name__ == "__main__":
    main()
