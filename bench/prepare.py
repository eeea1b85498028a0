"""Benchmark: the full feature preparation on Spark local[2] vs the same work in pandas.

    python bench/prepare.py --customers 200000

1. generates the transactions (Spark, ``spark-clustering generate``; timed separately);
2. runs ``spark-clustering prepare`` (examples/prepare.toml) in a child process on ``local[2]``
   with a fixed driver heap (``--driver-memory``), measuring wall time and the peak resident
   memory of the whole process tree (JVM + Python workers), sampled from /proc;
3. runs the same aggregation, cleaning, scaling, correlation and PCA in pandas/numpy in a
   child process, measured the same way;
4. prints both, rows per second and the Spark/pandas ratios.

Sizes of "the data": the Parquet bytes on disk and the in-memory size of the pandas frame.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "prepare.toml"
PAGE = os.sysconf("SC_PAGE_SIZE")


def _tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        try:
            with open(f"/proc/{pid}/statm") as fh:
                total += int(fh.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            pass
        stack.extend(children.get(pid, []))
    return total


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> dict:
    """Run ``cmd``; wall seconds, peak tree RSS (sampled every 0.2 s), its last stdout line."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(proc.pid))
        time.sleep(0.2)
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(err[-4000:])
        raise SystemExit(f"{cmd[:4]} failed with exit code {proc.returncode}")
    last = out.strip().splitlines()[-1] if out.strip() else "{}"
    return {"wall": wall, "peak_rss": peak, "stdout": last, "stderr": err}


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def pandas_worker(tx_dir: str, out_dir: str, sample_rows: int = 100_000) -> None:
    """The preparation of examples/prepare.toml, written in pandas/numpy."""
    import numpy as np
    import pandas as pd

    t0 = time.perf_counter()
    cols = ["customer_id", "timestamp", "amount", "channel", "category", "country"]
    df = pd.read_parquet(tx_dir, columns=cols)
    data_bytes = int(df.memory_usage(deep=True).sum())
    rows = len(df)
    df = df[df["customer_id"].notna()]
    bad = (df["amount"] < 0) | (df["amount"] > 100_000)
    df = df[~bad]
    ref = df["timestamp"].max()
    g = df.groupby("customer_id", sort=True)
    feats = pd.DataFrame(
        {
            "recency_days": (ref - g["timestamp"].max()).dt.total_seconds() / 86400.0,
            "frequency": g.size().astype("float64"),
            "monetary": g["amount"].sum(min_count=1),
            "tenure_days": (ref - g["timestamp"].min()).dt.total_seconds() / 86400.0,
            "avg_basket": g["amount"].mean(),
        }
    )
    spend = df.pivot_table(
        index="customer_id", columns="category", values="amount", aggfunc="sum", fill_value=0.0
    )
    shares = spend.div(feats["monetary"], axis=0).add_prefix("share_")
    feats = feats.join(shares)
    feats["distinct_channels"] = g["channel"].nunique().astype("float64")
    country = g["country"].max()
    # cleaning: winsorize, median impute, log1p, one-hot, drop constant
    for col in ("monetary", "avg_basket", "frequency"):
        lo, hi = feats[col].quantile([0.0, 0.995])
        feats[col] = feats[col].clip(lo, hi)
    feats = feats.fillna(feats.median())
    for col in ("monetary", "avg_basket", "frequency", "recency_days"):
        feats[col] = np.log1p(feats[col])
    onehot = pd.get_dummies(country, prefix="country", dummy_na=True, dtype="float64")
    x = feats.join(onehot)
    x = x.loc[:, x.min() != x.max()]
    # correlation on a sample, drop one of each pair with |r| >= 0.95
    sample = x.sample(n=min(sample_rows, len(x)), random_state=0)
    pearson = sample.corr("pearson").to_numpy()
    sample.corr("spearman")
    keep: list[int] = []
    for j in range(x.shape[1]):
        if all(abs(pearson[i, j]) < 0.95 for i in keep):
            keep.append(j)
    x = x.iloc[:, keep]
    # standard scaling (no centering, sample std) and PCA of the scaled sample
    x = x / x.std(ddof=1)
    s = x.loc[sample.index].to_numpy()
    eig = np.linalg.eigvalsh(np.cov(s, rowvar=False))[::-1]
    _ = eig[:8] / eig.sum()
    x.reset_index().to_parquet(os.path.join(out_dir, "features.parquet"))
    print(
        json.dumps(
            {
                "rows": rows,
                "customers": len(x),
                "features": x.shape[1],
                "data_bytes": data_bytes,
                "seconds_inside": time.perf_counter() - t0,
            }
        )
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--customers", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--driver-memory", default="2g", help="Spark driver heap (local mode)")
    p.add_argument("--work", default=str(ROOT / "bench" / "data" / "prepare"))
    p.add_argument("--keep", action="store_true", help="keep the generated data and outputs")
    p.add_argument(
        "--pandas-worker", nargs=2, metavar=("TX_DIR", "OUT_DIR"), help=argparse.SUPPRESS
    )
    args = p.parse_args(argv)
    if args.pandas_worker:
        pandas_worker(*args.pandas_worker)
        return 0

    work = Path(args.work) / f"n{args.customers}"
    data = work / "generated"
    env = dict(os.environ, SPARK_CLUSTERING_TRACKING="none", PYSPARK_PYTHON=sys.executable)
    py = sys.executable
    print(f"== {args.customers} customers, seed {args.seed}, work dir {work}", flush=True)
    if not (data / "transactions").exists():
        gen = run_measured(
            [py, "-m", "spark_clustering.cli", "generate", "--customers", str(args.customers),
             "--output", str(data), "--seed", str(args.seed), "--master", "local[2]"],
            env,
        )  # fmt: skip
        print(f"generate: {gen['wall']:.1f} s", flush=True)
    parquet_bytes = dir_bytes(data / "transactions")

    spark_out = work / "spark_prepared"
    shutil.rmtree(spark_out, ignore_errors=True)
    spark = run_measured(
        [py, "-m", "spark_clustering.cli", "prepare", "--config", str(EXAMPLE),
         "--input", str(data / "transactions"), "--output", str(spark_out),
         "--master", "local[2]", "--gpu", "off",
         "--conf", f"spark.driver.memory={args.driver_memory}",
         "--conf", "spark.sql.shuffle.partitions=8"],
        env,
    )  # fmt: skip
    (work / "spark_job.log").write_text(spark["stderr"])  # phase timings are in this log
    report = json.loads((spark_out / "report" / "report.json").read_text())
    rows = report["input"]["rows_read"]

    pandas_out = work / "pandas_prepared"
    shutil.rmtree(pandas_out, ignore_errors=True)
    pandas_out.mkdir(parents=True)
    pdres = run_measured(
        [py, __file__, "--pandas-worker", str(data / "transactions"), str(pandas_out)], env
    )
    pdinfo = json.loads(pdres["stdout"])
    children_maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024

    gib = 2**30
    print()
    print(f"transactions: {rows:,} rows, {report['customers']:,} customers")
    print(
        f"data size: {parquet_bytes / gib:.2f} GiB Parquet on disk, "
        f"{pdinfo['data_bytes'] / gib:.2f} GiB as a pandas frame"
    )
    print(f"{'':10} {'wall s':>8} {'rows/s':>12} {'peak RSS GiB':>13} {'features':>9}")
    for name, res, nfeat in (
        ("spark", spark, len(report["features"])),
        ("pandas", pdres, pdinfo["features"]),
    ):
        print(
            f"{name:10} {res['wall']:8.1f} {rows / res['wall']:12,.0f} "
            f"{res['peak_rss'] / gib:13.2f} {nfeat:9d}"
        )
    print(
        f"ratio spark/pandas: time {spark['wall'] / pdres['wall']:.2f}x, "
        f"peak memory {spark['peak_rss'] / max(pdres['peak_rss'], 1):.2f}x"
    )
    print(
        f"spark peak RSS / pandas data size: {spark['peak_rss'] / pdinfo['data_bytes']:.2f} "
        f"(driver heap {args.driver_memory}); largest single child process "
        f"(getrusage) {children_maxrss / gib:.2f} GiB"
    )
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
