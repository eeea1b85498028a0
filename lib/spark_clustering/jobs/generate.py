"""``spark-clustering generate``: realistic customer transactions for demos and benchmarks."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``generate`` sub-command."""
    p = subparsers.add_parser(
        "generate",
        help="generate synthetic customer transactions (Parquet) with known segments",
        description=(
            "Write OUTPUT/transactions (customer_id, timestamp, amount, channel, category, "
            "country, ...) and OUTPUT/segments (the true latent segment of each customer) as "
            "Parquet, generated on Spark; deterministic for a seed."
        ),
    )
    _arguments(p)
    p.set_defaults(func=run)
    return p


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--customers", type=int, required=True, help="number of customers")
    p.add_argument("--output", required=True, help="output directory (any Hadoop path)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--partitions", type=int, default=None, help="partitions of spark.range")
    p.add_argument(
        "--snapshot",
        type=int,
        default=0,
        help="a later snapshot of the same customers: periods after the base (0)",
    )
    p.add_argument(
        "--churn",
        type=float,
        default=0.05,
        help="share of the base customers lost per period (default 0.05)",
    )
    p.add_argument(
        "--arrivals",
        type=float,
        default=0.05,
        help="new customers per period, as a share of the base (default 0.05)",
    )
    p.add_argument("--period-days", type=int, default=30, help="days per period (default 30)")
    p.add_argument(
        "--shift-segment",
        default=None,
        help="latent segment whose customers spend --shift-factor times more",
    )
    p.add_argument("--shift-factor", type=float, default=3.0)  # fmt: skip
    p.add_argument("--master", default=None, help="Spark master (default: spark-submit's)")


def run(args: argparse.Namespace) -> int:
    """Run the sub-command; returns the exit code (2 on bad arguments)."""
    from spark_clustering.features.generate import Snapshot, generate_transactions
    from spark_clustering.jobs.entry import start_spark

    if args.customers < 1:
        print(f"error: --customers={args.customers}; accepted: >= 1", file=sys.stderr)
        return 2
    snapshot = Snapshot(args.snapshot, args.churn, args.arrivals, args.period_days,
                        args.shift_segment, args.shift_factor)  # fmt: skip
    try:
        snapshot.check()
    except ValueError as exc:
        print(f"error: generate: {exc}", file=sys.stderr)
        return 2
    spark = start_spark("spark-clustering-generate", master=args.master, gpu="off")
    start = time.perf_counter()
    out = generate_transactions(
        spark, args.customers, args.output, seed=args.seed, partitions=args.partitions,
        snapshot=snapshot,
    )  # fmt: skip
    log.info(
        "wrote %s and %s in %.1f s", out.transactions, out.segments, time.perf_counter() - start
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry: ``python -m spark_clustering.jobs.generate --customers N ...``."""
    p = argparse.ArgumentParser(prog="spark-clustering generate")
    _arguments(p)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return run(p.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
