"""The preparation as functions: raw data -> (id, features), the fitted PipelineModel, a report.

:func:`prepare_features` runs the whole declarative spec (read, check, aggregate, clean, scale,
assemble, analyse) and returns a :class:`PreparedFeatures`; :meth:`PreparedFeatures.save`
writes it (the ``prepare`` job wraps that in an atomic commit). :func:`apply_saved_preparation`
reapplies a saved preparation, with the same categories, reference date and fitted cleaning and
scaling, to new data.

Saved layout::

    <output>/features/          Parquet: <id>, features (vector, names in ML metadata)
    <output>/model/             PipelineModel: per-customer table -> (<id>, features)
    <output>/preparation.json   the spec, the categories, the reference date, the feature names
    <output>/report/report.json and PNG charts (correlation heatmaps, PCA explained variance)
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pyspark.sql import functions as F

from ..redact import redact
from ..sampling import uniform
from . import aggregate as agg_mod
from . import analysis, assemble, clean, scale
from .io import InputReport, handle_duplicate_ids, read_input, validate_input
from .spec import ColumnsSpec, PreparationSpec, expand

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.ml import PipelineModel
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

RAW_COL = "__features_raw"
KEPT_COL = "__features_kept"
SCALED_COL = "__features_scaled"
FORMAT_VERSION = 1


@dataclass
class PreparedFeatures:
    """The result of :func:`prepare_features`.

    Attributes
    ----------
    features : DataFrame
        ``<id>, features``: a vector of doubles per customer, slot names in the ML metadata.
    model : PipelineModel
        Per-customer table -> ``<id>, features`` (select, clip, impute, log1p, one-hot,
        assemble, slice, scale, name). Reapply with :func:`apply_saved_preparation`.
    feature_names : list of str
    report : dict
        Bad-input counts, dropped features, cleaning parameters, correlation and PCA.
    preparation : dict
        What reapplying needs: the spec, categories, reference date, column lists.
    """

    features: DataFrame
    model: PipelineModel
    feature_names: list[str]
    report: dict[str, Any]
    preparation: dict[str, Any]
    spec: PreparationSpec
    _cached: list[DataFrame] = field(default_factory=list, repr=False)

    def save(self, spark: SparkSession, path: str, charts: bool | None = None) -> None:
        """Write features, model, preparation.json and the report under ``path``.

        Not atomic by itself: the ``prepare`` job calls it inside
        :func:`spark_clustering.jobs.io.atomic_output`.
        """
        from spark_clustering.jobs.io import put_local_dir

        out = path.rstrip("/")
        features = self.features
        if self.spec.output.partitions:
            features = features.repartition(self.spec.output.partitions)
        features.write.mode("overwrite").parquet(f"{out}/features")
        self.model.write().overwrite().save(f"{out}/model")
        with tempfile.TemporaryDirectory(prefix="sc-prepare-") as local:
            with open(os.path.join(local, "preparation.json"), "w") as fh:
                json.dump(redact(self.preparation), fh, indent=2, default=str)
            report_dir = os.path.join(local, "report")
            os.makedirs(report_dir)
            with open(os.path.join(report_dir, "report.json"), "w") as fh:
                json.dump(redact(self.report), fh, indent=2, default=str)
            if self.spec.analysis.charts if charts is None else charts:
                analysis.write_charts(self.report, report_dir)
            put_local_dir(spark, local, out)

    @property
    def customers(self) -> DataFrame | None:
        """The cached per-customer table (id, numeric..., categorical...) before cleaning;
        ``None`` after :meth:`unpersist`."""
        return self._cached[0] if self._cached else None

    def unpersist(self) -> None:
        """Release the cached intermediate tables."""
        for df in self._cached:
            df.unpersist()
        self._cached.clear()


def customer_table(
    spark: SparkSession,
    spec: PreparationSpec,
    df: DataFrame | None = None,
    *,
    reference_date: str | None = None,
    categories: list[str] | None = None,
    other_category: bool | None = None,
) -> tuple[DataFrame, InputReport, agg_mod.AggregationInfo, list[str], list[str]]:
    """Read (or take ``df``), check, handle bad input and aggregate: one row per customer.

    Returns the table (id, numeric..., categorical...), the input report, the aggregation info,
    and the numeric and categorical feature column names.
    """
    raw = read_input(spark, spec.input) if df is None else df
    # a known reference date is also the cutoff of future transactions (else the run date)
    typed, report, dropped = validate_input(
        raw, spec, reference_date=reference_date or spec.transactions.reference_date
    )
    passthrough = ColumnsSpec(
        numeric=tuple(c for c in spec.columns.numeric if c not in dropped),
        categorical=tuple(c for c in spec.columns.categorical if c not in dropped),
    )
    id_col = spec.input.id_col
    if spec.input.kind == "transactions":
        ref = reference_date or spec.transactions.reference_date or report.max_timestamp
        table, info = agg_mod.aggregate_transactions(
            typed,
            id_col,
            spec.transactions,
            passthrough,
            reference_date=ref,
            categories=categories,
            other_category=other_category,
        )
        numeric = [*info.feature_columns, *passthrough.numeric]
    else:
        table = handle_duplicate_ids(typed, id_col, spec.bad_input.duplicate_ids, report)
        info = agg_mod.AggregationInfo(None, (), False, tuple(passthrough.numeric))
        numeric = list(passthrough.numeric)
    categorical = list(passthrough.categorical)
    table = table.select(id_col, *numeric, *categorical)
    return table, report, info, numeric, categorical


def _column_stats(table: DataFrame, numeric: list[str]) -> dict[str, Any]:
    exprs = [F.count(F.lit(1)).alias("__n")]
    for c in numeric:
        exprs += [F.count(F.col(c)).alias(f"{c}__nn"), F.min(F.col(c)).alias(f"{c}__min")]
    row = table.agg(*exprs).first()
    assert row is not None
    return row.asDict()


def prepare_features(
    spark: SparkSession, spec: PreparationSpec, df: DataFrame | None = None
) -> PreparedFeatures:
    """Run the preparation the spec describes and return features, fitted model and report.

    Parameters
    ----------
    spark : SparkSession
    spec : PreparationSpec
        From :func:`spark_clustering.features.spec.load_spec`.
    df : DataFrame, optional
        The raw input; by default it is read from ``spec.input``.

    Raises
    ------
    ValueError
        On bad input the spec does not allow (missing columns, values that are not numbers,
        an empty input, entirely null columns, duplicate ids, out-of-range values), before any
        output is written.

    Examples
    --------
    >>> spec = load_spec("examples/prepare.toml")  # doctest: +SKIP
    >>> prepared = prepare_features(spark, spec)  # doctest: +SKIP
    >>> prepared.features.columns  # doctest: +SKIP
    ['customer_id', 'features']
    """
    import time

    from pyspark import StorageLevel
    from pyspark.ml import Pipeline, PipelineModel

    started = time.perf_counter()

    def phase(what: str) -> None:
        log.info("%s (%.1f s)", what, time.perf_counter() - started)

    id_col = spec.input.id_col
    c = spec.clean
    table, in_report, info, numeric, categorical = customer_table(spark, spec, df)
    table = table.persist(StorageLevel.MEMORY_AND_DISK)
    cached = [table]

    stats = _column_stats(table, numeric)
    n_customers = int(stats["__n"])
    phase(f"input checked and aggregated: {n_customers} customers")
    if n_customers == 0:
        raise ValueError(
            f"input.path={spec.input.path!r}: no customers left after bad-input handling "
            f"({in_report.as_dict()})"
        )
    all_null = [col for col in numeric if int(stats[f"{col}__nn"]) == 0]
    if all_null:
        if spec.bad_input.all_null != "drop":
            raise ValueError(
                f"feature columns {all_null} are entirely null over {n_customers} customers; "
                "fix the input or set bad_input.all_null = 'drop'"
            )
        log.warning("feature columns %s are entirely null: dropped", all_null)
        in_report.all_null_dropped += all_null
        numeric = [col for col in numeric if col not in all_null]
    if not numeric and not categorical:
        raise ValueError("no feature columns are left to prepare")

    win_cols = expand(c.winsorize, numeric)
    log_cols = expand(c.log1p, numeric)
    bounds = clean.winsorize_bounds(
        table, win_cols, c.winsorize_lower, c.winsorize_upper, c.relative_error
    )
    rules = clean.resolve_impute_rules(numeric, c.impute, c.impute_default)
    selected = clean.select_stage(id_col, numeric, categorical, bounds)
    # medians and means of the clipped values, as the fill stage will see them
    imputers, constants = clean.impute_stages(
        rules, selected.transform(table), [id_col], c.relative_error
    )
    for col in log_cols:  # log1p is undefined at <= -1: check the clipped minimum
        low = stats[f"{col}__min"]
        if col in bounds:
            low = max(low, bounds[col][0])
        if low <= -1.0 or constants.get(col, 0.0) <= -1.0:
            raise ValueError(
                f"clean.log1p: column {col!r} has values <= -1 (minimum {low}), where log1p "
                "is undefined; remove it from clean.log1p, winsorize it or add a range rule"
            )
    ohe = clean.one_hot_stages(categorical)
    assembled_inputs = [*numeric, *[col + clean.OHE_SUFFIX for col in categorical]]
    stages_a = [
        selected,
        *imputers,
        clean.fill_log_stage(id_col, numeric, categorical, constants, log_cols),
        *ohe,
        assemble.assembler_stage(assembled_inputs, RAW_COL),
    ]
    model_a = Pipeline(stages=stages_a).fit(table)
    raw = model_a.transform(table).select(id_col, RAW_COL).persist(StorageLevel.MEMORY_AND_DISK)
    cached.append(raw)
    phase("cleaning fitted (winsorize, impute, log1p, one-hot, assemble)")
    all_names = assemble.display_names(assemble.feature_names(raw, RAW_COL), categorical)

    keep = list(range(len(all_names)))
    dropped_constant: list[str] = []
    if c.drop_constant:
        constant = set(clean.constant_slots(raw, RAW_COL))
        dropped_constant = [all_names[i] for i in sorted(constant)]
        keep = [i for i in keep if i not in constant]
        if dropped_constant:
            log.warning("dropped %d constant feature(s): %s", len(constant), dropped_constant)
    if not keep:
        raise ValueError(f"every feature is constant over {n_customers} customers: {all_names}")

    report: dict[str, Any] = {
        "customers": n_customers,
        "input": in_report.as_dict(),
        "aggregation": {
            "reference_date": info.reference_date,
            "categories": list(info.categories),
            "other_category": info.other_category,
        },
        "clean": {
            "winsorize_bounds": {k: list(v) for k, v in bounds.items()},
            "impute": {k: r.strategy for k, r in rules.items()},
            "log1p": log_cols,
            "one_hot": categorical,
            "dropped_constant": dropped_constant,
        },
    }
    for stage in model_a.stages:  # the fitted imputation values
        if type(stage).__name__ == "ImputerModel":
            surrogates = stage.surrogateDF.first().asDict()  # type: ignore[attr-defined]
            report["clean"].setdefault("imputed_values", {}).update(surrogates)
    report["clean"].setdefault("imputed_values", {}).update(constants)

    # correlation of the non-constant features (unscaled: correlation ignores scale)
    a = spec.analysis
    names_kept = [all_names[i] for i in keep]
    dropped_correlated: list[dict[str, Any]] = []
    # Correlation and PCA on at most analysis.sample_rows customers (a seeded sample): the
    # estimates are within ~1/sqrt(sample_rows) and Spearman's ranking stays cheap at any size.
    fraction = min(1.0, a.sample_rows / n_customers)
    # drawn by a hash of the customer id (sampling.uniform), the same customers on any layout
    sample = raw if fraction >= 1.0 else raw.where(uniform(0, "analysis", id_col) < fraction)
    report["analysis_rows"] = "all" if fraction >= 1.0 else f"sample of {fraction:.4f}"
    if a.enabled and (a.correlation or a.drop_correlated is not None):
        sliced = assemble.slicer_stage(keep, RAW_COL, KEPT_COL).transform(sample)
        methods = list(a.correlation)
        if a.drop_correlated is not None and a.drop_method not in methods:
            methods.append(a.drop_method)
        matrices = {m: analysis.correlation_matrix(sliced, KEPT_COL, m) for m in methods}
        report["correlation"] = {
            m: analysis.matrix_to_json(mat, names_kept) for m, mat in matrices.items()
        }
        if a.drop_correlated is not None:
            kept_local, dropped_correlated = analysis.select_uncorrelated(
                matrices[a.drop_method], names_kept, a.drop_correlated
            )
            keep = [keep[i] for i in kept_local]
            for d in dropped_correlated:
                log.warning(
                    "dropped %r: |%s r| = %.3f with %r (>= %s)",
                    d["feature"], a.drop_method, abs(d["r"]), d["correlated_with"],
                    a.drop_correlated,
                )  # fmt: skip
    report["dropped_correlated"] = dropped_correlated
    phase("constant and correlated features checked")
    final_names = [all_names[i] for i in keep]

    stages_b: list[Any] = []
    vec = RAW_COL
    if len(keep) < len(all_names):
        stages_b.append(assemble.slicer_stage(keep, RAW_COL, KEPT_COL))
        vec = KEPT_COL
    to_scale = Pipeline(stages=stages_b).fit(raw).transform(raw) if stages_b else raw
    scaler = scale.fit_scaler(spec.scale, to_scale, vec, SCALED_COL, [id_col], c.relative_error)
    if scaler is not None:
        stages_b.append(scaler)
        vec = SCALED_COL
    stages_b.append(
        assemble.FeatureNames(
            inputCol=vec, outputCol="features", idCol=id_col, featureNames=final_names
        )
    )
    model_b = Pipeline(stages=stages_b).fit(raw)
    if scaler is not None:
        zeroed = scale.degenerate_features(model_b.stages[-2], final_names)
        if zeroed:
            log.warning(
                "%s scaling maps %d feature(s) to a constant (zero spread): %s",
                spec.scale.method, len(zeroed), zeroed,
            )  # fmt: skip
        report["scale"] = {"method": spec.scale.method, "degenerate_features": zeroed}
    model = PipelineModel(stages=[*model_a.stages, *model_b.stages])
    features = model_b.transform(raw)
    report["features"] = final_names
    if a.enabled and a.pca_components > 0:
        report["pca"] = analysis.pca_report(
            model_b.transform(sample), "features", final_names, a.pca_components, a.pca_top
        )
    phase("scaling fitted, PCA report done")
    preparation = {
        "format_version": FORMAT_VERSION,
        # saved with the features and the model: reader credentials never are (score takes
        # them from the Spark / Hadoop configuration)
        "spec": redact(spec.to_dict()),
        "id_col": id_col,
        "kind": spec.input.kind,
        "reference_date": info.reference_date,
        "categories": list(info.categories),
        "other_category": info.other_category,
        "numeric": numeric,
        "categorical": categorical,
        "feature_names": final_names,
    }
    return PreparedFeatures(features, model, final_names, report, preparation, spec, cached)


def _read_text(spark: SparkSession, path: str) -> str:
    from spark_clustering.jobs.io import is_local, local_path

    if is_local(path):
        with open(local_path(path)) as fh:
            return fh.read()
    row = spark.read.text(path, wholetext=True).first()
    assert row is not None
    return str(row[0])


def load_preparation(spark: SparkSession, path: str) -> tuple[PipelineModel, dict[str, Any]]:
    """Load ``<path>/model`` and ``<path>/preparation.json`` (``path`` may also be the model)."""
    from pyspark.ml import PipelineModel

    from spark_clustering.jobs.io import path_exists

    root = path.rstrip("/")
    if root.endswith("/model") and not path_exists(spark, f"{root}/preparation.json"):
        root = root[: -len("/model")]
    meta_path = f"{root}/preparation.json"
    if not path_exists(spark, meta_path):
        raise ValueError(
            f"{path!r} is not a saved preparation: {meta_path} is missing (expected the output "
            "directory of the prepare job)"
        )
    meta = json.loads(_read_text(spark, meta_path))
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{meta_path} has format_version={meta.get('format_version')!r}; "
            f"accepted: {FORMAT_VERSION}"
        )
    return PipelineModel.load(f"{root}/model"), meta


def _spec_from_saved(meta: dict[str, Any]) -> PreparationSpec:
    from .spec import parse_spec

    s = meta["spec"]
    doc: dict[str, Any] = {
        "input": {k: v for k, v in s["input"].items() if v is not None},
        "output": {"path": s["output"]["path"] or "unused"},
        "columns": {"numeric": s["columns"]["numeric"], "categorical": s["columns"]["categorical"]},
        "bad_input": {k: v for k, v in s["bad_input"].items() if k != "ranges"},
    }
    doc["input"]["path"] = doc["input"].get("path") or "unused"
    t = {k: v for k, v in s["transactions"].items() if v is not None}
    doc["transactions"] = t
    doc["bad_input"]["ranges"] = {
        r["column"]: {
            k: v
            for k, v in (("min", r["min"]), ("max", r["max"]), ("action", r["action"]))
            if v is not None
        }
        for r in s["bad_input"]["ranges"]
    }
    return parse_spec(doc, source="preparation.json")


def apply_saved_preparation(
    spark: SparkSession,
    model_path: str,
    df: DataFrame,
    *,
    reference_date: str | None = None,
) -> DataFrame:
    """Prepare new data exactly as a saved preparation did: ``<id>, features``.

    Parameters
    ----------
    spark : SparkSession
    model_path : str
        The prepare job's output directory (or its ``model`` sub-directory).
    df : DataFrame
        New raw data of the same kind as the fitted input (transactions or per-customer
        rows). Bad input is checked and handled with the saved spec's ``[bad_input]`` rules.
    reference_date : str, optional
        Recency and tenure are measured to this date. Default: the fitted reference date, so
        the same data gives the same features; pass ``"latest"`` to use the new data's latest
        timestamp (scoring a later snapshot).

    Notes
    -----
    Categories are the fitted ones: unseen categories add to no share (or to ``share_other``
    when the fit had one), unseen one-hot levels go to ``<col>=__unknown``.
    The saved ``PipelineModel`` holds one Python stage (:class:`FeatureNames`); like any Spark
    ML model it should only be loaded from a trusted path.

    Examples
    --------
    >>> new = spark.read.parquet("s3://bucket/transactions/2026-02/")  # doctest: +SKIP
    >>> scored = apply_saved_preparation(spark, "s3://bucket/prepared/", new)  # doctest: +SKIP
    """
    model, meta = load_preparation(spark, model_path)
    spec = _spec_from_saved(meta)
    ref = meta.get("reference_date")
    if reference_date == "latest":
        ref = None
        spec = replace(spec, transactions=replace(spec.transactions, reference_date=None))
    elif reference_date is not None:
        ref = reference_date
    kept = set(meta["numeric"]) | set(meta["categorical"])
    spec = replace(
        spec,
        columns=ColumnsSpec(
            numeric=tuple(col for col in spec.columns.numeric if col in kept),
            categorical=tuple(col for col in spec.columns.categorical if col in kept),
        ),
    )
    table, _, _, _, _ = customer_table(
        spark,
        spec,
        df,
        reference_date=ref,
        categories=meta["categories"],
        other_category=meta["other_category"],
    )
    # a column dropped here as entirely null is filled by the fitted imputation
    for col in meta["numeric"]:
        if col not in table.columns:
            table = table.withColumn(col, F.lit(None).cast("double"))
    for col in meta["categorical"]:
        if col not in table.columns:
            table = table.withColumn(col, F.lit(None).cast("string"))
    return model.transform(table)
