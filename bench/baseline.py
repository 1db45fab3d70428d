"""The quality gate's files: baselines and a run's scores read strictly, what a run was asked for, and
baselines written from a run.

A baseline is a CSV of summary cells, `method, dataset, scale, protocol, psnr, ssim, n_images`; its
per-image companion `<stem>.per_image.csv` holds `method, dataset, scale, protocol, image, psnr, ssim`
for the closed-form methods only (no weights file): they are bit-exact on any machine, while a network's
per-image scores may move with the CPU's float arithmetic.

Every file is read strictly: a blank, NaN or non-numeric cell, or a cell repeated, is refused with the
file and the line, never passed on (a NaN baseline would pass any run). A run's own files may leave the
scores of a failed cell blank.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import BenchError, UsageError
from bench.store import atomic_write_text

__all__ = [
    "BASELINE_COLUMNS",
    "PER_IMAGE_COLUMNS",
    "CheckError",
    "BaselineUpdate",
    "per_image_path",
    "read_baseline",
    "read_run_file",
    "RunScope",
    "read_scope",
    "baseline_from_run",
    "merge_baseline",
    "plan_update",
    "write_baseline",
]

METRICS = ("psnr", "ssim")
CELL = ["method", "dataset", "scale", "protocol"]
BASELINE_COLUMNS = [*CELL, "psnr", "ssim", "n_images"]
PER_IMAGE_COLUMNS = [*CELL, "image", "psnr", "ssim"]


class CheckError(BenchError):
    """A run folder or baseline file cannot be compared (absent, malformed, nothing in common)."""


def per_image_path(baseline: Path) -> Path:
    """`bench/baselines/quality.csv` -> `bench/baselines/quality.per_image.csv`."""
    return baseline.with_name(f"{baseline.stem}.per_image.csv")


@dataclass(frozen=True)
class _Table:
    """What a CSV must hold: its columns, and whether it is a run's own file (failed rows have no score)."""

    what: str
    columns: list[str]
    run: bool = False

    @property
    def keys(self) -> list[str]:
        return [c for c in self.columns if c in [*CELL, "image"]]

    def fix(self, path: Path) -> str:
        if self.run:
            return f"rewrite it from the run's journal with 'python -m bench run --resume {path.parent}'"
        return "correct or delete that row, or rewrite the file from a good run with --update-baseline"


def _read_csv(path: Path, table: _Table) -> pd.DataFrame:
    """`path` with `table`'s columns typed (scale int, scores float); CheckError names any bad row."""
    if not path.is_file():
        raise CheckError(f"{table.what} {path} not found")
    try:
        # every cell as text, blank lines kept: each cell is checked below, and line numbers stay exact
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except (ValueError, OSError) as exc:
        why = " ".join(str(exc).split())
        raise CheckError(
            f"{table.what} {path} cannot be read as CSV ({why}); restore it from git or regenerate it"
        ) from exc
    absent = [c for c in table.columns if c not in df.columns]
    if absent:
        raise CheckError(
            f"{table.what} {path} lacks column(s) {', '.join(absent)}; expected {', '.join(table.columns)}"
        )
    df = df.fillna("").astype(str).apply(lambda col: col.str.strip())
    df = df[(df != "").any(axis=1)]  # an empty line is no row; the index keeps the line numbers
    for i, row in zip(df.index, df.to_dict("records"), strict=True):
        problem = _row_problem(row, table)
        if problem:
            raise CheckError(f"{table.what} {path} line {i + 2}: {problem}; {table.fix(path)}")
    df["scale"] = df["scale"].astype(int)
    for m in METRICS:
        df[m] = pd.to_numeric(df[m], errors="coerce")  # blanks (failed run rows only) become NaN
    if "n_images" in table.columns:
        df["n_images"] = df["n_images"].astype(int)
    _refuse_duplicates(df, path, table)
    return df


def _row_problem(row: dict[str, str], table: _Table) -> str | None:
    """What is wrong with one row, or None."""
    for c in table.columns:
        if c not in METRICS and not row[c]:
            return f"{c} is blank"
    if not row["scale"].isdigit() or int(row["scale"]) < 1:
        return f"scale {row['scale']!r} is not a positive integer"
    if "n_images" in table.columns and not row["n_images"].isdigit():
        return f"n_images {row['n_images']!r} is not a whole number"
    scored = not table.run or row["status"] == "ok"  # a failed cell of a run has no score
    for m in METRICS:
        text = row[m]
        if not text:
            if scored:
                return f"{m} is blank"
            continue
        try:
            value = float(text)
        except ValueError:
            return f"{m} {text!r} is not a number"
        if math.isnan(value) and scored:
            return f"{m} is NaN"
    return None


def _refuse_duplicates(df: pd.DataFrame, path: Path, table: _Table) -> None:
    first: dict[tuple[object, ...], int] = {}
    for i, k in zip(df.index, key_of(df, table.keys), strict=True):
        if k in first:
            raise CheckError(
                f"{table.what} {path} line {i + 2} repeats the cell {label(table.keys, k)} of line "
                f"{first[k] + 2}; keep one of them: {table.fix(path)}"
            )
        first[k] = i


def key_of(df: pd.DataFrame, cols: list[str]) -> pd.Series:
    """One tuple per row of `df`: its values in `cols`."""
    return pd.Series(list(zip(*(df[c].tolist() for c in cols), strict=True)), index=df.index, dtype=object)


def label(keys: list[str], k: tuple[object, ...]) -> str:
    """('srcnn', 'set5', 2, 'paper') -> 'srcnn set5 x2' (the paper protocol goes unsaid)."""
    return " ".join(
        f"x{v}" if c == "scale" else str(v)
        for c, v in zip(keys, k, strict=True)
        if not (c == "protocol" and v == "paper")
    )


def read_baseline(path: Path, per_image: bool = False) -> pd.DataFrame:
    """The baseline cells (or per-image rows) of `path`.

    Raises CheckError when the file is absent or malformed, or a row has a blank, NaN or non-numeric
    cell or repeats an earlier cell: the message names the file and the line.
    """
    if per_image:
        return _read_csv(path, _Table("per-image baseline", PER_IMAGE_COLUMNS))[PER_IMAGE_COLUMNS]
    return _read_csv(path, _Table("baseline", BASELINE_COLUMNS))[BASELINE_COLUMNS]


def read_run_file(run_dir: Path, per_image: bool = False) -> pd.DataFrame:
    """A run's summary.csv (or quality.csv when `per_image`), read as strictly as a baseline.

    Raises UsageError when `run_dir` does not exist, CheckError when the file is absent or a row is bad.
    """
    name = "quality.csv" if per_image else "summary.csv"
    if not run_dir.is_dir():
        raise UsageError(
            f"run folder {run_dir} does not exist; give the --out folder of a 'python -m bench run'"
        )
    path = run_dir / name
    if not path.is_file():
        raise CheckError(
            f"{path} not found: {run_dir} is not a finished run with a quality pass; "
            f"run 'python -m bench run ... --pass quality --out {run_dir}' (or --resume it)"
        )
    cols = (PER_IMAGE_COLUMNS if per_image else BASELINE_COLUMNS) + ["status"]
    return _read_csv(path, _Table("run file", cols, run=True))


@dataclass(frozen=True)
class RunScope:
    """The cells a run was asked to produce; baseline cells outside it are not compared.

    `pairs` are (dataset, protocol); `methods` and `scales` None mean any. `source` says where the
    scope was read.
    """

    pairs: frozenset[tuple[str, str]]
    methods: frozenset[str] | None = None
    scales: frozenset[int] | None = None
    source: str = "the run's cells"

    @classmethod
    def of_cells(cls, run_df: pd.DataFrame) -> RunScope:
        """The (dataset, protocol) pairs a run holds, any method and scale."""
        return cls(frozenset(zip(run_df["dataset"], run_df["protocol"], strict=True)))

    def holds(self, df: pd.DataFrame) -> pd.Series:
        """A boolean mask: which rows of `df` (baseline or run rows) fall inside the scope."""
        pairs = zip(df["dataset"], df["protocol"], strict=True)
        mask = pd.Series([p in self.pairs for p in pairs], index=df.index, dtype=bool)
        if self.methods is not None:
            mask &= df["method"].isin(self.methods)
        if self.scales is not None:
            mask &= df["scale"].isin(self.scales)
        return mask


def read_scope(run_dir: Path, run_df: pd.DataFrame) -> RunScope:
    """The cells `run_dir` was asked to produce: its config.json's methods, scales and datasets (in
    the run's protocol), plus whatever cells `run_df` (its summary or quality rows) holds.

    Without a config.json the scope is the methods, scales and (dataset, protocol) pairs of `run_df`.
    Raises CheckError when config.json exists but cannot be read or lacks those fields.
    """
    held = RunScope(
        pairs=RunScope.of_cells(run_df).pairs,
        methods=frozenset(run_df["method"]),
        scales=frozenset(int(s) for s in run_df["scale"]),
        source="the cells of the run (it has no config.json)",
    )
    path = run_dir / "config.json"
    if not path.exists():
        return held
    asked = _read_config(path)
    # defaulted datasets may have fallen back to `sample`: only the datasets the run holds count then
    datasets = [] if asked["datasets_defaulted"] else [d.lower() for d in asked["datasets"]]
    return RunScope(
        pairs=held.pairs | {(d, asked["protocol"]) for d in datasets},
        methods=frozenset(asked["methods"]) | (held.methods or frozenset()),
        scales=frozenset(asked["scales"]) | (held.scales or frozenset()),
        source=str(path),
    )


def _read_config(path: Path) -> dict[str, Any]:
    fix = "restore it, or rerun the benchmark into a new folder"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        why = " ".join(str(exc).split())
        raise CheckError(
            f"{path} cannot be read ({why}); it says which cells the run was asked for: {fix}"
        ) from exc
    expected = {"methods": str, "datasets": str, "scales": int}
    ok = isinstance(config, dict) and isinstance(config.get("protocol"), str)
    for name, kind in expected.items():
        values = config.get(name) if ok else None
        ok = ok and isinstance(values, list) and all(isinstance(v, kind) for v in values)
    if not ok:
        raise CheckError(
            f"{path} is not a run's config: expected lists 'methods', 'datasets', 'scales' and a "
            f"'protocol' (what the run was asked for); {fix}"
        )
    return {**config, "datasets_defaulted": bool(config.get("datasets_defaulted", False))}


def baseline_from_run(run_df: pd.DataFrame, per_image: bool = False) -> pd.DataFrame:
    """The baseline rows a run's summary.csv (or quality.csv when `per_image`) would commit.

    Per-image rows keep only closed-form methods (no weights_sha256): see the module doc.
    Raises CheckError when a cell failed: a failure is never recorded as the expected result.
    """
    failed = run_df[(run_df["status"].astype(str) != "ok") | run_df["psnr"].isna() | run_df["ssim"].isna()]
    if not failed.empty:
        cells = ", ".join(sorted({f"{r.method} {r.dataset} x{r.scale}" for r in failed.itertuples()}))
        raise CheckError(
            f"the run has failed cells ({cells}); a baseline records successful scores only: "
            f"fix the failure and rerun before --update-baseline"
        )
    if per_image:
        df = run_df
        if "weights_sha256" in df.columns:
            df = df[df["weights_sha256"].isna() | (df["weights_sha256"].astype(str).isin(["", "nan"]))]
        return df[PER_IMAGE_COLUMNS].reset_index(drop=True)
    return run_df[BASELINE_COLUMNS].reset_index(drop=True)


def merge_baseline(old: pd.DataFrame, new: pd.DataFrame, keys: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """`old` with the (method, dataset, protocol) groups of `new` replaced by `new`'s rows; the rows of
    other methods and datasets are kept. Returns (merged, lines describing the changes).

    Sorted by dataset, protocol, method, scale[, image], so regenerating gives a minimal diff.
    """
    group = ["method", "dataset", "protocol"]
    new_groups = set(key_of(new, group))
    if old.empty:
        old = pd.DataFrame(columns=new.columns)
    replaced = pd.Series([g in new_groups for g in key_of(old, group)], index=old.index, dtype=bool)
    kept = old[~replaced]
    old_by_key = {k: r for k, r in zip(key_of(old, keys), old.to_dict("records"), strict=True)}
    new_keys = set(key_of(new, keys))

    changes = []
    unchanged = 0
    for k, r in zip(key_of(new, keys), new.to_dict("records"), strict=True):
        o = old_by_key.get(k)
        if o is None:
            changes.append(f"  added    {label(keys, k)}: psnr {r['psnr']:.4f}, ssim {r['ssim']:.5f}")
            continue
        moved = [m for m in ("psnr", "ssim", "n_images") if m in r and not _same(o[m], r[m])]
        if moved:
            parts = ", ".join(f"{m} {float(o[m]):.6g} -> {float(r[m]):.6g}" for m in moved)
            changes.append(f"  changed  {label(keys, k)}: {parts}")
        else:
            unchanged += 1
    for k in key_of(old[replaced], keys):
        if k not in new_keys:
            changes.append(f"  removed  {label(keys, k)}: not in this run")
    if unchanged:
        changes.append(f"  {unchanged} rows unchanged")
    if len(kept):
        changes.append(f"  {len(kept)} rows of other methods or datasets kept as they were")
    frames = [f for f in (kept, new) if len(f)]
    merged = pd.concat(frames, ignore_index=True) if frames else new
    order = ["dataset", "protocol", "method", "scale"] + (["image"] if "image" in keys else [])
    merged = merged.sort_values(order, kind="stable").reset_index(drop=True)
    return merged, changes


def _same(a: object, b: object) -> bool:
    x, y = float(a), float(b)  # type: ignore[arg-type]
    return (math.isnan(x) and math.isnan(y)) or x == y


@dataclass(frozen=True)
class BaselineUpdate:
    """One baseline file rewritten from a run: its rows from the run, rows in all, and the changes."""

    path: Path
    run_rows: int
    total_rows: int
    changes: tuple[str, ...] = ()


def plan_update(
    run_dir: Path, path: Path, per_image: bool, datasets: frozenset[str] | None
) -> tuple[BaselineUpdate, pd.DataFrame]:
    """What rewriting `path` from the run in `run_dir` (its `datasets` only; None: all) would change,
    and the rows to write; writes nothing. Raises CheckError on a failed cell or a malformed file."""
    run_df = read_run_file(run_dir, per_image)
    if datasets is not None:
        run_df = run_df[run_df["dataset"].isin(datasets)]
    new = baseline_from_run(run_df, per_image)
    old = read_baseline(path, per_image) if path.is_file() else pd.DataFrame(columns=new.columns)
    merged, changes = merge_baseline(old, new, CELL + (["image"] if per_image else []))
    columns = PER_IMAGE_COLUMNS if per_image else BASELINE_COLUMNS
    return BaselineUpdate(path, len(new), len(merged), tuple(changes)), merged[columns]


def write_baseline(path: Path, rows: pd.DataFrame) -> None:
    """Write baseline rows atomically at full precision."""
    # 17 significant digits round-trip a float64: a rewrite without changes is byte-identical
    atomic_write_text(path, rows.to_csv(index=False, float_format="%.17g"))
