"""The declarative preparation spec (TOML): parsing and validation, every problem listed at once.

A spec names the input, the id column and the features; see ``docs/features.md`` and
``examples/prepare.toml``. :func:`load_spec` reads a file, :func:`parse_spec` a mapping; both
raise :class:`SpecError` (a ``ValueError``) listing *every* problem found, each naming the key,
the value and what is accepted, before any Spark work starts.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..base import ProblemsError

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

FORMATS = ("parquet", "csv", "json")
KINDS = ("transactions", "customers")
AGGREGATES = (
    "recency",
    "frequency",
    "monetary",
    "tenure",
    "avg_basket",
    "category_shares",
    "distinct_channels",
)
#: aggregate -> the feature column it produces (category_shares gives share_<category>)
AGGREGATE_COLUMNS = {
    "recency": "recency_days",
    "frequency": "frequency",
    "monetary": "monetary",
    "tenure": "tenure_days",
    "avg_basket": "avg_basket",
    "distinct_channels": "distinct_channels",
}
SHARE_PREFIX = "share_"
IMPUTE_STRATEGIES = ("median", "mean", "mode", "constant")
SCALERS = ("standard", "minmax", "robust", "none")
CORRELATIONS = ("pearson", "spearman")
NON_NUMERIC_ACTIONS = ("error", "null")
NULL_ID_ACTIONS = ("error", "drop")
DUPLICATE_ID_ACTIONS = ("error", "keep_one", "drop")
ALL_NULL_ACTIONS = ("error", "drop")
RANGE_ACTIONS = ("error", "drop", "clip", "null")
FUTURE_ACTIONS = ("error", "drop", "clip")
DUPLICATE_TRANSACTION_ACTIONS = ("error", "drop", "keep")
#: the transaction id column used for de-duplication when the spec names none and the input has it
DEFAULT_TRANSACTION_ID = "transaction_id"


class SpecError(ProblemsError):
    """A preparation spec with problems; ``problems`` lists each one."""

    def __init__(self, problems: list[str], source: str | None = None) -> None:
        where = f" in {source}" if source else ""
        super().__init__(problems, f"the preparation spec{where} has {len(problems)} problem(s)")


@dataclass(frozen=True)
class InputSpec:
    """Where the raw data is and how to read it."""

    path: str
    format: str = "parquet"
    kind: str = "transactions"
    id_col: str = "customer_id"
    options: Mapping[str, str] = field(default_factory=dict)
    timestamp_format: str | None = None


@dataclass(frozen=True)
class TransactionsSpec:
    """How transactions are aggregated per customer (``input.kind = "transactions"``)."""

    timestamp_col: str = "timestamp"
    amount_col: str = "amount"
    category_col: str | None = "category"
    channel_col: str | None = "channel"
    aggregates: tuple[str, ...] = AGGREGATES
    reference_date: str | None = None
    categories: tuple[str, ...] | None = None
    max_categories: int = 50
    #: duplicate transactions share this id; None: ``transaction_id`` when the input has that
    #: column, else whole rows; "": always whole rows
    transaction_id_col: str | None = None


@dataclass(frozen=True)
class ColumnsSpec:
    """Plain per-customer columns: numeric and categorical (one-hot encoded)."""

    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()


@dataclass(frozen=True)
class RangeRule:
    """Values of ``column`` outside [min, max] are bad; ``action`` says what happens to them."""

    column: str
    min: float | None = None
    max: float | None = None
    action: str = "drop"


@dataclass(frozen=True)
class BadInputSpec:
    """What to do with each kind of bad input: fail, or a counted and logged handling."""

    non_numeric: str = "error"
    null_ids: str = "error"
    duplicate_ids: str = "error"
    all_null: str = "error"
    ranges: tuple[RangeRule, ...] = ()
    future_timestamps: str = "drop"
    duplicate_transactions: str = "drop"


@dataclass(frozen=True)
class ImputeRule:
    strategy: str = "median"
    value: float | None = None


@dataclass(frozen=True)
class CleanSpec:
    """Imputation, winsorizing, log1p, one-hot encoding and constant-column dropping."""

    impute_default: ImputeRule = ImputeRule()
    impute: Mapping[str, ImputeRule] = field(default_factory=dict)
    winsorize: tuple[str, ...] = ()
    winsorize_lower: float = 0.01
    winsorize_upper: float = 0.99
    relative_error: float = 0.001
    log1p: tuple[str, ...] = ()
    drop_constant: bool = True


@dataclass(frozen=True)
class ScaleSpec:
    """The scaler fitted on the data and saved with the preparation."""

    method: str = "standard"
    with_mean: bool = False
    min: float = 0.0
    max: float = 1.0
    lower: float = 0.25
    upper: float = 0.75


@dataclass(frozen=True)
class AnalysisSpec:
    """Correlation, correlated-feature dropping and the PCA report."""

    enabled: bool = True
    correlation: tuple[str, ...] = CORRELATIONS
    drop_correlated: float | None = None
    drop_method: str = "pearson"
    pca_components: int = 10
    pca_top: int = 3
    charts: bool = True
    sample_rows: int = 100_000


@dataclass(frozen=True)
class OutputSpec:
    path: str
    partitions: int | None = None


@dataclass(frozen=True)
class PreparationSpec:
    """The whole preparation, as read from TOML. See ``examples/prepare.toml``."""

    input: InputSpec
    output: OutputSpec
    transactions: TransactionsSpec = TransactionsSpec()
    columns: ColumnsSpec = ColumnsSpec()
    bad_input: BadInputSpec = BadInputSpec()
    clean: CleanSpec = CleanSpec()
    scale: ScaleSpec = ScaleSpec()
    analysis: AnalysisSpec = AnalysisSpec()
    source: str | None = None

    def with_paths(self, input_path: str | None = None, output_path: str | None = None):
        """A copy with the input and/or output path replaced (CLI overrides)."""
        spec = self
        if input_path:
            spec = replace(spec, input=replace(spec.input, path=input_path))
        if output_path:
            spec = replace(spec, output=replace(spec.output, path=output_path))
        return spec

    def static_feature_names(self) -> list[str]:
        """Feature columns known before reading data (category shares are found later)."""
        names: list[str] = []
        if self.input.kind == "transactions":
            for agg in self.transactions.aggregates:
                if agg == "category_shares":
                    for cat in self.transactions.categories or ():
                        names.append(share_column(cat))
                else:
                    names.append(AGGREGATE_COLUMNS[agg])
        names += [c for c in self.columns.numeric if c not in names]
        return names

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy (saved next to the output for provenance and reapplication)."""
        from dataclasses import asdict

        return asdict(self)


def share_column(category: str) -> str:
    """The feature name of a category's spend share: ``share_<category>``, made SQL-safe."""
    safe = "".join(ch if ch.isalnum() else "_" for ch in str(category).strip().lower())
    return SHARE_PREFIX + (safe or "blank")


class _Reader:
    """Walks the TOML mapping, collecting problems instead of stopping at the first one."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def table(self, data: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> dict:
        value = data.get(key, {})
        if not isinstance(value, Mapping):
            self.problems.append(f"[{key}] must be a table, got {type(value).__name__}")
            return {}
        for k in value:
            if k not in allowed:
                self.problems.append(
                    f"unknown key {key}.{k}; accepted keys in [{key}]: {', '.join(allowed)}"
                )
        return dict(value)

    def get(self, table: dict, name: str, key: str, kind: Any, default: Any) -> Any:
        if key not in table:
            return default
        value = table[key]
        ok = isinstance(value, kind) and not (
            kind in (int, float, (int, float)) and isinstance(value, bool)
        )
        if not ok:
            want = getattr(kind, "__name__", None) or "number"
            self.problems.append(f"{name}.{key}={value!r} has the wrong type; accepted: {want}")
            return default
        return value

    def choice(self, table: dict, name: str, key: str, choices: tuple[str, ...], default: str):
        value = self.get(table, name, key, str, default)
        if value not in choices:
            self.problems.append(
                f"{name}.{key}={value!r} is not valid; accepted: {', '.join(choices)}"
            )
            return default
        return value

    def strings(self, table: dict, name: str, key: str, default: tuple) -> tuple[str, ...]:
        value = table.get(key, default)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            self.problems.append(f"{name}.{key}={value!r} is not valid; accepted: list of strings")
            return tuple(default)
        return tuple(value)

    def fraction(self, table: dict, name: str, key: str, default: float, lo=0.0, hi=1.0):
        value = self.get(table, name, key, (int, float), default)
        if not lo <= float(value) <= hi:
            self.problems.append(f"{name}.{key}={value} is not valid; accepted: {lo} to {hi}")
            return default
        return float(value)


def parse_spec(data: Mapping[str, Any], source: str | None = None) -> PreparationSpec:
    """Build and validate a :class:`PreparationSpec` from a mapping (a parsed TOML document).

    Raises
    ------
    SpecError
        Listing every problem: unknown keys, wrong types, invalid choices, column names used by
        a cleaning rule but not among the features, inconsistent bounds.
    """
    r = _Reader()
    top = ("input", "output", "transactions", "columns", "bad_input", "clean", "scale", "analysis")
    for key in data:
        if key not in top:
            r.problems.append(f"unknown table [{key}]; accepted: {', '.join(top)}")

    t = r.table(data, "input", ("path", "format", "kind", "id_col", "options", "timestamp_format"))
    if not isinstance(t.get("path"), str) or not t.get("path"):
        r.problems.append("input.path is missing; accepted: a path or URI (s3://, hdfs://, ...)")
    options = t.get("options", {})
    if not isinstance(options, Mapping):
        r.problems.append(f"input.options={options!r} is not valid; accepted: a table")
        options = {}
    inp = InputSpec(
        path=str(t.get("path", "")),
        format=r.choice(t, "input", "format", FORMATS, "parquet"),
        kind=r.choice(t, "input", "kind", KINDS, "transactions"),
        id_col=r.get(t, "input", "id_col", str, "customer_id"),
        options={
            str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in options.items()
        },
        timestamp_format=r.get(t, "input", "timestamp_format", str, None),
    )

    t = r.table(data, "output", ("path", "partitions"))
    if not isinstance(t.get("path"), str) or not t.get("path"):
        r.problems.append("output.path is missing; accepted: a directory path or URI")
    partitions = r.get(t, "output", "partitions", int, None)
    if partitions is not None and partitions < 1:
        r.problems.append(f"output.partitions={partitions} is not valid; accepted: >= 1")
    out = OutputSpec(path=str(t.get("path", "")), partitions=partitions)

    tx_keys = (
        "timestamp_col", "amount_col", "category_col", "channel_col", "aggregates",
        "reference_date", "categories", "max_categories", "transaction_id_col",
    )  # fmt: skip
    t = r.table(data, "transactions", tx_keys)
    aggregates = r.strings(t, "transactions", "aggregates", AGGREGATES)
    for agg in aggregates:
        if agg not in AGGREGATES:
            r.problems.append(
                f"transactions.aggregates has {agg!r}; accepted: {', '.join(AGGREGATES)}"
            )
    aggregates = tuple(a for a in aggregates if a in AGGREGATES)
    categories = t.get("categories")
    if categories is not None:
        categories = r.strings(t, "transactions", "categories", ())
    ref = r.get(t, "transactions", "reference_date", str, None)
    if ref is not None:
        import datetime as _dt

        try:
            _dt.datetime.fromisoformat(ref)
        except ValueError:
            r.problems.append(
                f"transactions.reference_date={ref!r} is not valid; accepted: an ISO date "
                "such as '2026-01-01' or '2026-01-01 12:00:00'"
            )
    max_categories = r.get(t, "transactions", "max_categories", int, 50)
    if max_categories < 1:
        r.problems.append(
            f"transactions.max_categories={max_categories} is not valid; accepted: >= 1"
        )
    trans = TransactionsSpec(
        timestamp_col=r.get(t, "transactions", "timestamp_col", str, "timestamp"),
        amount_col=r.get(t, "transactions", "amount_col", str, "amount"),
        category_col=r.get(t, "transactions", "category_col", str, "category") or None,
        channel_col=r.get(t, "transactions", "channel_col", str, "channel") or None,
        aggregates=aggregates,
        reference_date=ref,
        categories=categories,
        max_categories=max_categories,
        transaction_id_col=r.get(t, "transactions", "transaction_id_col", str, None),
    )
    if trans.transaction_id_col and trans.transaction_id_col == inp.id_col:
        r.problems.append(
            f"transactions.transaction_id_col={trans.transaction_id_col!r} is the customer id "
            "column; accepted: the column that identifies one transaction, or '' to compare "
            "whole rows"
        )
    if "category_shares" in aggregates and not trans.category_col:
        r.problems.append("transactions.aggregates has 'category_shares' but category_col is empty")
    if "distinct_channels" in aggregates and not trans.channel_col:
        r.problems.append(
            "transactions.aggregates has 'distinct_channels' but channel_col is empty"
        )

    t = r.table(data, "columns", ("numeric", "categorical"))
    cols = ColumnsSpec(
        numeric=r.strings(t, "columns", "numeric", ()),
        categorical=r.strings(t, "columns", "categorical", ()),
    )
    both = set(cols.numeric) & set(cols.categorical)
    if both:
        r.problems.append(f"columns {sorted(both)} are listed as both numeric and categorical")
    if inp.id_col in cols.numeric or inp.id_col in cols.categorical:
        r.problems.append(f"the id column {inp.id_col!r} cannot also be a feature column")
    if inp.kind == "customers" and not (cols.numeric or cols.categorical):
        r.problems.append(
            "input.kind='customers' needs feature columns: set columns.numeric and/or "
            "columns.categorical"
        )
    if inp.kind == "transactions" and not aggregates and not (cols.numeric or cols.categorical):
        r.problems.append("no features: transactions.aggregates and [columns] are all empty")

    bad = _parse_bad_input(r, data, inp, trans)
    clean = _parse_clean(r, data)
    scale = _parse_scale(r, data)
    analysis = _parse_analysis(r, data)
    spec = PreparationSpec(inp, out, trans, cols, bad, clean, scale, analysis, source)
    _check_feature_names(r, spec)
    if r.problems:
        raise SpecError(r.problems, source)
    return spec


def _parse_bad_input(r: _Reader, data, inp: InputSpec, trans: TransactionsSpec) -> BadInputSpec:
    keys = (
        "non_numeric", "null_ids", "duplicate_ids", "all_null", "ranges", "future_timestamps",
        "duplicate_transactions",
    )  # fmt: skip
    t = r.table(data, "bad_input", keys)
    rules: list[RangeRule] = []
    ranges = t.get("ranges")
    if ranges is None and inp.kind == "transactions":
        # default: a negative amount is a refund or an error; it is dropped, counted and logged
        rules.append(RangeRule(trans.amount_col, 0.0, None, "drop"))
    elif ranges is not None:
        if not isinstance(ranges, Mapping):
            r.problems.append("bad_input.ranges must be a table of column = { min, max, action }")
            ranges = {}
        for col, rule in ranges.items():
            if not isinstance(rule, Mapping):
                r.problems.append(f"bad_input.ranges.{col} must be a table {{ min, max, action }}")
                continue
            rt = r.table({col: rule}, col, ("min", "max", "action"))
            name = f"bad_input.ranges.{col}"
            lo = r.get(rt, name, "min", (int, float), None)
            hi = r.get(rt, name, "max", (int, float), None)
            if lo is None and hi is None:
                r.problems.append(f"{name} needs min and/or max")
            if lo is not None and hi is not None and lo > hi:
                r.problems.append(f"{name}: min={lo} is above max={hi}")
            action = r.choice(rt, name, "action", RANGE_ACTIONS, "drop")
            rules.append(RangeRule(col, None if lo is None else float(lo),
                                   None if hi is None else float(hi), action))  # fmt: skip
    return BadInputSpec(
        non_numeric=r.choice(t, "bad_input", "non_numeric", NON_NUMERIC_ACTIONS, "error"),
        null_ids=r.choice(t, "bad_input", "null_ids", NULL_ID_ACTIONS, "error"),
        duplicate_ids=r.choice(t, "bad_input", "duplicate_ids", DUPLICATE_ID_ACTIONS, "error"),
        all_null=r.choice(t, "bad_input", "all_null", ALL_NULL_ACTIONS, "error"),
        ranges=tuple(rules),
        future_timestamps=r.choice(t, "bad_input", "future_timestamps", FUTURE_ACTIONS, "drop"),
        duplicate_transactions=r.choice(
            t, "bad_input", "duplicate_transactions", DUPLICATE_TRANSACTION_ACTIONS, "drop"
        ),
    )


def _impute_rule(r: _Reader, name: str, value: Any) -> ImputeRule:
    if isinstance(value, str):
        value = {"strategy": value}
    if not isinstance(value, Mapping):
        r.problems.append(
            f"{name}={value!r} is not valid; accepted: a strategy name or "
            "{ strategy = 'constant', value = <number> }"
        )
        return ImputeRule()
    t = r.table({name: value}, name, ("strategy", "value"))
    strategy = r.choice(t, name, "strategy", IMPUTE_STRATEGIES, "median")
    fill = r.get(t, name, "value", (int, float), None)
    if strategy == "constant" and fill is None:
        r.problems.append(f"{name}: strategy 'constant' needs a numeric value")
    if strategy != "constant" and fill is not None:
        r.problems.append(f"{name}: value is only used with strategy 'constant'")
    return ImputeRule(strategy, None if fill is None else float(fill))


def _parse_clean(r: _Reader, data) -> CleanSpec:
    keys = (
        "impute_default", "impute", "winsorize", "winsorize_lower", "winsorize_upper",
        "relative_error", "log1p", "drop_constant",
    )  # fmt: skip
    t = r.table(data, "clean", keys)
    default = _impute_rule(r, "clean.impute_default", t.get("impute_default", "median"))
    rules = t.get("impute", {})
    if not isinstance(rules, Mapping):
        r.problems.append("clean.impute must be a table of column = strategy")
        rules = {}
    impute = {str(c): _impute_rule(r, f"clean.impute.{c}", v) for c, v in rules.items()}
    lower = r.fraction(t, "clean", "winsorize_lower", 0.01)
    upper = r.fraction(t, "clean", "winsorize_upper", 0.99)
    if lower >= upper:
        r.problems.append(
            f"clean.winsorize_lower={lower} must be below clean.winsorize_upper={upper}"
        )
    rel = r.fraction(t, "clean", "relative_error", 0.001, 0.0, 0.5)
    return CleanSpec(
        impute_default=default,
        impute=impute,
        winsorize=r.strings(t, "clean", "winsorize", ()),
        winsorize_lower=lower,
        winsorize_upper=upper,
        relative_error=rel,
        log1p=r.strings(t, "clean", "log1p", ()),
        drop_constant=r.get(t, "clean", "drop_constant", bool, True),
    )


def _parse_scale(r: _Reader, data) -> ScaleSpec:
    t = r.table(data, "scale", ("method", "with_mean", "min", "max", "lower", "upper"))
    lo = float(r.get(t, "scale", "min", (int, float), 0.0))
    hi = float(r.get(t, "scale", "max", (int, float), 1.0))
    if lo >= hi:
        r.problems.append(f"scale.min={lo} must be below scale.max={hi}")
    # Spark's RobustScaler takes quantiles strictly between 0 and 1
    lower = r.fraction(t, "scale", "lower", 0.25, 1e-9, 1.0 - 1e-9)
    upper = r.fraction(t, "scale", "upper", 0.75, 1e-9, 1.0 - 1e-9)
    if lower >= upper:
        r.problems.append(f"scale.lower={lower} must be below scale.upper={upper}")
    return ScaleSpec(
        method=r.choice(t, "scale", "method", SCALERS, "standard"),
        with_mean=r.get(t, "scale", "with_mean", bool, False),
        min=lo,
        max=hi,
        lower=lower,
        upper=upper,
    )


def _parse_analysis(r: _Reader, data) -> AnalysisSpec:
    keys = (
        "enabled", "correlation", "drop_correlated", "drop_method", "pca_components", "pca_top",
        "charts", "sample_rows",
    )  # fmt: skip
    t = r.table(data, "analysis", keys)
    methods = r.strings(t, "analysis", "correlation", CORRELATIONS)
    for m in methods:
        if m not in CORRELATIONS:
            r.problems.append(
                f"analysis.correlation has {m!r}; accepted: {', '.join(CORRELATIONS)}"
            )
    threshold = r.get(t, "analysis", "drop_correlated", (int, float), None)
    if threshold is not None and not 0.0 < float(threshold) <= 1.0:
        r.problems.append(
            f"analysis.drop_correlated={threshold} is not valid; accepted: 0 < threshold <= 1"
        )
    k = r.get(t, "analysis", "pca_components", int, 10)
    top = r.get(t, "analysis", "pca_top", int, 3)
    if k < 1:
        r.problems.append(f"analysis.pca_components={k} is not valid; accepted: >= 1")
    if top < 0:
        r.problems.append(f"analysis.pca_top={top} is not valid; accepted: >= 0")
    sample_rows = r.get(t, "analysis", "sample_rows", int, 100_000)
    if sample_rows < 100:
        r.problems.append(f"analysis.sample_rows={sample_rows} is not valid; accepted: >= 100")
    return AnalysisSpec(
        enabled=r.get(t, "analysis", "enabled", bool, True),
        correlation=tuple(m for m in methods if m in CORRELATIONS),
        drop_correlated=None if threshold is None else float(threshold),
        drop_method=r.choice(t, "analysis", "drop_method", CORRELATIONS, "pearson"),
        pca_components=k,
        pca_top=top,
        charts=r.get(t, "analysis", "charts", bool, True),
        sample_rows=sample_rows,
    )


def _check_feature_names(r: _Reader, spec: PreparationSpec) -> None:
    """Cleaning rules must name numeric features (globs allowed, ``share_*`` found later)."""
    known = spec.static_feature_names()
    shares_later = (
        spec.input.kind == "transactions"
        and "category_shares" in spec.transactions.aggregates
        and spec.transactions.categories is None
    )
    groups: list[tuple[str, tuple[str, ...]]] = [
        ("clean.winsorize", spec.clean.winsorize),
        ("clean.log1p", spec.clean.log1p),
        ("clean.impute", tuple(spec.clean.impute)),
    ]
    for name, patterns in groups:
        for pattern in patterns:
            if shares_later and pattern.startswith(SHARE_PREFIX):
                continue
            if not fnmatch.filter(known, pattern):
                r.problems.append(
                    f"{name} names {pattern!r}, which matches no numeric feature; "
                    f"numeric features: {', '.join(known) or '(none)'}"
                )
    if spec.input.kind == "transactions":
        t = spec.transactions
        used = [t.timestamp_col, t.amount_col, t.category_col, t.channel_col, spec.input.id_col,
                t.transaction_id_col]  # fmt: skip
        clash = [c for c in (*spec.columns.numeric, *spec.columns.categorical) if c in used]
        if clash:
            r.problems.append(
                f"columns {clash} are transaction fields used by the aggregation; they cannot "
                "be passed through as features"
            )


def load_spec(path: str) -> PreparationSpec:
    """Read and validate a TOML spec file (local path).

    Examples
    --------
    >>> spec = load_spec("examples/prepare.toml")  # doctest: +SKIP
    >>> spec.scale.method  # doctest: +SKIP
    'standard'
    """
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ValueError(f"spec file {path!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"spec file {path!r} is not valid TOML: {exc}") from None
    return parse_spec(data, source=path)


def expand(patterns: tuple[str, ...] | list[str], names: list[str]) -> list[str]:
    """The names matching any of the glob patterns, in the order of ``names``."""
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
