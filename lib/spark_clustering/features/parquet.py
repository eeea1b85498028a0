"""Parquet timestamps Spark 3.5 will not read: nanoseconds, pandas' default through pyarrow.

Spark refuses ``INT64 TIMESTAMP(NANOS)`` columns unless
``spark.sql.legacy.parquet.nanosAsLong`` is set, and then reads them as plain longs with nothing
in the schema to tell them apart from other longs. :func:`parquet_nanos_columns` reads the
footer of one file to find them; :func:`nanos_to_timestamps` turns them back into timestamps.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pyspark.sql import functions as F

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

NANOS_MARKER = "TIMESTAMP(NANOS"
NANOS_AS_LONG = "spark.sql.legacy.parquet.nanosAsLong"


def parquet_nanos_columns(spark: SparkSession, path: str) -> dict[str, bool]:
    """Top-level columns of nanosecond timestamp type in the first Parquet file under ``path``.

    Maps each name to the footer's ``isAdjustedToUTC`` (true: an instant; false: a wall-clock
    time). Read through Hadoop on the JVM gateway, so any Hadoop path works; hidden files and
    folders (``_SUCCESS``, ``_temporary``, ``.crc``) are skipped, as Spark skips them. Empty
    when no file is found or its footer cannot be read (Spark's own read then says why).
    """
    jvm: Any = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    root = jvm.org.apache.hadoop.fs.Path(path)
    try:
        fs = root.getFileSystem(conf)
        root_len = len(str(fs.makeQualified(root).toUri().getPath()).rstrip("/"))
        found = None
        files = fs.listFiles(root, True)
        while files.hasNext():
            status = files.next()
            rel = str(status.getPath().toUri().getPath())[root_len:]
            if status.getLen() > 0 and not any(p[:1] in "_." for p in rel.split("/") if p):
                found = status.getPath()
                break
        if found is None:
            return {}
        input_file = jvm.org.apache.parquet.hadoop.util.HadoopInputFile.fromPath(found, conf)
        reader = jvm.org.apache.parquet.hadoop.ParquetFileReader.open(input_file)
        try:
            schema = reader.getFooter().getFileMetaData().getSchema()
        finally:
            reader.close()
    except Exception as exc:  # not Parquet, unreadable: Spark's read reports it properly
        log.debug("could not read a Parquet footer under %r: %s", path, str(exc)[:200])
        return {}
    out: dict[str, bool] = {}
    for fld in schema.getFields():
        note = fld.getLogicalTypeAnnotation() if fld.isPrimitive() else None
        if note is not None and str(note.toString()).startswith(NANOS_MARKER):
            out[str(fld.getName())] = bool(note.isAdjustedToUTC())
    return out


def nanos_to_timestamps(spark: SparkSession, df: DataFrame, columns: dict[str, bool]) -> DataFrame:
    """Long columns of epoch nanoseconds (name -> UTC-adjusted) as timestamps, truncated to
    microseconds; wall-clock ones are read as Spark reads a TIMESTAMP_NTZ, in the session time
    zone."""
    tz = spark.conf.get("spark.sql.session.timeZone") or "UTC"
    for col, utc in columns.items():
        if col not in df.columns:
            continue
        q = "`" + col.replace("`", "``") + "`"
        # integer floor division: a double would lose the last digits of 1.7e18 nanoseconds
        ts = F.expr(f"timestamp_micros(({q} - pmod({q}, 1000)) div 1000)")
        if not utc:
            # a wall-clock time: read as Spark reads a TIMESTAMP_NTZ, in the session time zone
            ts = F.to_utc_timestamp(ts, tz)
        df = df.withColumn(col, ts)
    return df
