"""Compare a run's quality scores with a committed baseline and name every cell that moved.

A baseline is a CSV of summary cells: `method, dataset, scale, protocol, psnr, ssim, n_images`
(default `reports/baselines/quality.csv`, for Set5/Set14; `reports/baselines/sample.csv` holds the
built-in `sample` images). Its per-image companion `<stem>.per_image.csv` (`method, dataset, scale,
protocol, image, psnr, ssim`) holds the closed-form methods only (no weights file): they are bit-exact on
any machine, while a network's per-image scores may move with the CPU's float arithmetic.

Scope: a run is compared with the baseline cells of the (dataset, protocol) pairs it contains, so a run
on `sample` never reports the Set5 rows of a shared baseline as missing. Within that scope:
- `regression`: run < baseline - tolerance, a failed cell (status failed, NaN score) or a different
  image count (the mean is over other images, so it cannot be compared); the gate fails (exit 3);
- `missing`: a baseline cell the run lacks (a method, scale or image dropped); the gate fails;
- `improvement`: run > baseline + tolerance; reported, passes (update the baseline to keep the gain);
- `new`: a run cell the baseline lacks; reported, passes;
- `ok` otherwise. Both metrics are higher-is-better.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from bench.errors import BenchError, UsageError
from bench.store import atomic_write_text

__all__ = [
    "DEFAULT_BASELINE",
    "DEFAULT_TOLERANCE",
    "BASELINE_COLUMNS",
    "PER_IMAGE_COLUMNS",
    "parse_tolerance",
    "compare",
    "read_baseline",
    "baseline_from_run",
    "merge_baseline",
    "per_image_path",
    "run_check",
]

DEFAULT_BASELINE = Path("reports/baselines/quality.csv")
DEFAULT_TOLERANCE = {"psnr": 0.01, "ssim": 0.0005}
METRICS = ("psnr", "ssim")
BASELINE_COLUMNS = ["method", "dataset", "scale", "protocol", "psnr", "ssim", "n_images"]
PER_IMAGE_COLUMNS = ["method", "dataset", "scale", "protocol", "image", "psnr", "ssim"]
CELL = ["method", "dataset", "scale", "protocol"]
COMPARE_COLUMNS = ["method", "dataset", "scale", "protocol", "metric", "baseline", "run", "delta", "verdict"]
# worst first: a cell's verdict is the worst of its metrics'
VERDICTS = ("regression", "missing", "improvement", "new", "ok")


class CheckError(BenchError):
    """A run folder or baseline file cannot be compared (absent, malformed, nothing in common)."""


def parse_tolerance(text: str) -> dict[str, float]:
    """'psnr=0.01,ssim=0.0005' -> {'psnr': 0.01, 'ssim': 0.0005}; a metric left out keeps its default.

    Raises UsageError for an unknown metric, a value that is not a number, or a negative one.
    """
    tol = dict(DEFAULT_TOLERANCE)
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip().lower()
        if not sep or name not in METRICS:
            raise UsageError(
                f"bad tolerance {part!r}; expected METRIC=VALUE with METRIC in "
                f"{', '.join(METRICS)}, e.g. --tolerance psnr=0.01,ssim=0.0005"
            )
        try:
            v = float(value)
        except ValueError:
            v = math.nan
        if not math.isfinite(v) or v < 0:
            raise UsageError(
                f"bad tolerance {part!r}: {value.strip()!r} is not a non-negative number; "
                f"e.g. --tolerance psnr=0.01,ssim=0.0005"
            )
        tol[name] = v
    return tol


def per_image_path(baseline: Path) -> Path:
    """`reports/baselines/quality.csv` -> `reports/baselines/quality.per_image.csv`."""
    return baseline.with_name(f"{baseline.stem}.per_image.csv")


def _read_csv(path: Path, required: list[str], what: str) -> pd.DataFrame:
    if not path.is_file():
        raise CheckError(f"{what} {path} not found")
    try:
        df = pd.read_csv(path, keep_default_na=True)
    except (ValueError, OSError) as exc:
        raise CheckError(
            f"{what} {path} cannot be read as CSV ({exc}); restore it from git or regenerate it"
        ) from exc
    absent = [c for c in required if c not in df.columns]
    if absent:
        raise CheckError(f"{what} {path} lacks column(s) {', '.join(absent)}; expected {', '.join(required)}")
    df["scale"] = pd.to_numeric(df["scale"], errors="coerce").astype("Int64")
    for m in METRICS:
        df[m] = pd.to_numeric(df[m], errors="coerce")
    for c in ("method", "dataset", "protocol") + (("image",) if "image" in required else ()):
        df[c] = df[c].astype(str)
    return df


def read_baseline(path: Path, per_image: bool = False) -> pd.DataFrame:
    """The baseline cells (or per-image rows) of `path`; CheckError when absent or malformed."""
    if per_image:
        return _read_csv(path, PER_IMAGE_COLUMNS, "per-image baseline")[PER_IMAGE_COLUMNS]
    df = _read_csv(path, BASELINE_COLUMNS, "baseline")
    df["n_images"] = pd.to_numeric(df["n_images"], errors="coerce").astype("Int64")
    return df[BASELINE_COLUMNS]


def _read_run(run_dir: Path, per_image: bool) -> pd.DataFrame:
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
    df = _read_csv(path, cols, "run file")
    if not per_image:
        df["n_images"] = pd.to_numeric(df["n_images"], errors="coerce").astype("Int64")
    return df


def _key(df: pd.DataFrame, cols: list[str]) -> pd.Series:
    return pd.Series(list(zip(*(df[c].tolist() for c in cols), strict=True)), index=df.index, dtype=object)


def _verdict(base: float, run: float, tol: float, run_failed: bool) -> str:
    if run_failed or math.isnan(run):
        return "regression"
    if math.isnan(base):
        return "improvement"  # the baseline recorded a failure; the run now scores
    if run < base - tol:
        return "regression"
    if run > base + tol:
        return "improvement"
    return "ok"


def compare(
    run_df: pd.DataFrame, baseline_df: pd.DataFrame, tolerance: dict[str, float], per_image: bool = False
) -> pd.DataFrame:
    """One row per (cell, metric): `method, dataset, scale, protocol[, image], metric, baseline, run,
    delta, verdict` with verdict in ok, regression, improvement, missing, new (see the module doc).

    `run_df` is a run's summary.csv (or quality.csv when `per_image`), `baseline_df` a baseline of the
    same kind. Only baseline cells of the (dataset, protocol) pairs present in the run are compared.
    Summary cells also compare `n_images` exactly. Rows are in baseline order, new cells last.
    """
    keys = CELL + (["image"] if per_image else [])
    tol = {**DEFAULT_TOLERANCE, **tolerance}
    metrics = list(METRICS) + ([] if per_image else ["n_images"])
    scope = set(zip(run_df["dataset"], run_df["protocol"], strict=True))
    base = baseline_df[
        [(d, p) in scope for d, p in zip(baseline_df["dataset"], baseline_df["protocol"], strict=True)]
    ]
    run_by_key = {k: r for k, r in zip(_key(run_df, keys), run_df.to_dict("records"), strict=True)}
    base_keys = set()
    rows: list[dict[str, object]] = []

    def emit(cell: dict[str, object], b: dict[str, object] | None, r: dict[str, object] | None) -> None:
        failed = r is not None and str(r.get("status", "ok")) != "ok"
        for m in metrics:
            bv = _num(b[m]) if b is not None else math.nan
            rv = _num(r[m]) if r is not None else math.nan
            if r is None:
                verdict = "missing"
            elif b is None:
                verdict = "new"
            elif m == "n_images":
                # a mean over other images cannot be compared with the baseline's
                verdict = "ok" if bv == rv else "regression"
            else:
                verdict = _verdict(bv, rv, tol[m], failed)
            rows.append(
                {**cell, "metric": m, "baseline": bv, "run": rv, "delta": rv - bv, "verdict": verdict}
            )

    for k, b in zip(_key(base, keys), base.to_dict("records"), strict=True):
        base_keys.add(k)
        emit(dict(zip(keys, k, strict=True)), b, run_by_key.get(k))
    for k, r in run_by_key.items():
        if k not in base_keys:
            emit(dict(zip(keys, k, strict=True)), None, r)
    cols = keys + COMPARE_COLUMNS[len(CELL) :]
    out = pd.DataFrame(rows, columns=cols)
    out["scale"] = out["scale"].astype(int)
    return out


def _num(v: object) -> float:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return f


def cell_verdicts(result: pd.DataFrame) -> pd.DataFrame:
    """One row per cell with the worst verdict of its metrics."""
    keys = [c for c in result.columns if c in CELL + ["image"]]
    rank = {v: i for i, v in enumerate(VERDICTS)}
    worst = result.assign(_r=result["verdict"].map(rank)).groupby(keys, sort=False)["_r"].min()
    return worst.map(dict(enumerate(VERDICTS))).rename("verdict").reset_index()


def _fmt(v: float, metric: str, signed: bool = False) -> str:
    if math.isnan(v):
        return "-"
    if metric == "n_images":
        return f"{v:+.0f}" if signed else f"{v:.0f}"
    digits = 3 if metric == "psnr" else 5
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def format_table(result: pd.DataFrame, only_changed: bool = False) -> str:
    """A readable table, one line per cell: baseline -> run (delta) for PSNR and SSIM, then the verdict."""
    keys = [c for c in result.columns if c in CELL + ["image"]]
    verdicts = cell_verdicts(result)
    if only_changed:
        verdicts = verdicts[verdicts["verdict"] != "ok"]
    if verdicts.empty:
        return ""
    by_cell = {k: g for k, g in result.groupby(keys, sort=False)}
    lines = []
    for rec in verdicts.to_dict("records"):
        k = tuple(rec[c] for c in keys)
        g = by_cell[k].set_index("metric")
        line = {"method": rec["method"], "dataset": rec["dataset"], "scale": f"x{rec['scale']}"}
        if "image" in keys:
            line["image"] = rec["image"]
        if rec["protocol"] != "paper":
            line["protocol"] = rec["protocol"]
        for m in METRICS:
            b, r, d = g.at[m, "baseline"], g.at[m, "run"], g.at[m, "delta"]
            line[f"{m} baseline"] = _fmt(b, m)
            line[f"{m} run"] = _fmt(r, m)
            line[f"{m} delta"] = _fmt(d, m, signed=True)
        notes = []
        if rec["verdict"] == "regression" and any(math.isnan(g.at[m, "run"]) for m in METRICS):
            notes.append("failed in the run")
        if "n_images" in g.index and g.at["n_images", "verdict"] == "regression":
            notes.append(
                f"n_images {_fmt(g.at['n_images', 'baseline'], 'n_images')} -> "
                f"{_fmt(g.at['n_images', 'run'], 'n_images')}"
            )
        if notes:
            line["note"] = "; ".join(notes)
        line["verdict"] = rec["verdict"] if rec["verdict"] == "ok" else rec["verdict"].upper()
        lines.append(line)
    df = pd.DataFrame(lines)
    if "protocol" in df:
        df["protocol"] = df["protocol"].fillna("paper")
    if "note" in df:
        df["note"] = df["note"].fillna("")
    return df.to_string(index=False)


def summary_line(result: pd.DataFrame) -> str:
    counts = cell_verdicts(result)["verdict"].value_counts()
    n = {v: int(counts.get(v, 0)) for v in VERDICTS}
    text = (
        f"check: {n['ok']} cells ok, {n['regression']} regressions, {n['missing']} missing, "
        f"{n['improvement']} improvements"
    )
    if n["new"]:
        text += f", {n['new']} new (not in the baseline)"
    return text


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
    new_groups = set(_key(new, group))
    if old.empty:
        old = pd.DataFrame(columns=new.columns)
    replaced = pd.Series([g in new_groups for g in _key(old, group)], index=old.index, dtype=bool)
    kept = old[~replaced]
    old_by_key = {k: r for k, r in zip(_key(old, keys), old.to_dict("records"), strict=True)}
    new_keys = set(_key(new, keys))

    def label(k: tuple[object, ...]) -> str:
        return " ".join(
            f"x{v}" if c == "scale" else str(v)
            for c, v in zip(keys, k, strict=True)
            if not (c == "protocol" and v == "paper")
        )

    changes = []
    unchanged = 0
    for k, r in zip(_key(new, keys), new.to_dict("records"), strict=True):
        o = old_by_key.get(k)
        if o is None:
            changes.append(f"  added    {label(k)}: psnr {r['psnr']:.4f}, ssim {r['ssim']:.5f}")
            continue
        moved = [m for m in ("psnr", "ssim", "n_images") if m in r and not _same(o[m], r[m])]
        if moved:
            parts = ", ".join(f"{m} {_num(o[m]):.6g} -> {_num(r[m]):.6g}" for m in moved)
            changes.append(f"  changed  {label(k)}: {parts}")
        else:
            unchanged += 1
    for k in _key(old[replaced], keys):
        if k not in new_keys:
            changes.append(f"  removed  {label(k)}: not in this run")
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
    x, y = _num(a), _num(b)
    return (math.isnan(x) and math.isnan(y)) or x == y


def _write_baseline(path: Path, df: pd.DataFrame) -> None:
    # full precision (17 significant digits round-trip a float64): a rewrite without changes is byte-identical
    atomic_write_text(path, df.to_csv(index=False, float_format="%.17g"))


def _update(run_dir: Path, baseline: Path, per_image: bool) -> int:
    targets = [(baseline, False)]
    pi_path = per_image_path(baseline)
    if per_image or pi_path.is_file():
        targets.append((pi_path, True))  # keep the per-image file in step with the summary one
    for path, pi in targets:
        run_df = _read_run(run_dir, pi)
        new = baseline_from_run(run_df, pi)
        old = read_baseline(path, pi) if path.is_file() else pd.DataFrame(columns=new.columns)
        keys = CELL + (["image"] if pi else [])
        merged, changes = merge_baseline(old, new, keys)
        _write_baseline(path, merged[PER_IMAGE_COLUMNS if pi else BASELINE_COLUMNS])
        print(f"updated {path} from {run_dir} ({len(new)} rows of this run, {len(merged)} rows in all):")
        shown = (
            changes if len(changes) <= 40 else changes[:30] + [f"  ... and {len(changes) - 30} more lines"]
        )
        for line in shown:
            print(line)
    print("review the diff (git diff reports/baselines) and commit it with the change that moved the scores")
    return 0


def _other_baselines(baseline: Path, datasets: set[str]) -> list[str]:
    # the error names the sibling baselines that do hold the run's datasets, if any
    found = []
    folder = baseline.parent
    for p in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
        if p == baseline or p.name.endswith(".per_image.csv"):
            continue
        try:
            ds = set(pd.read_csv(p, usecols=["dataset"])["dataset"].astype(str))
        except (ValueError, OSError):
            continue
        if ds & datasets:
            found.append(str(p))
    return found


def run_check(args: argparse.Namespace) -> int:
    """`python -m bench check RUN_DIR`: 0 when every cell is within tolerance, 3 on a regression or a
    missing cell. `--baseline` defaults to reports/baselines/quality.csv (relative to the working folder)."""
    tolerance = parse_tolerance(args.tolerance)
    run_dir = Path(args.run_dir)
    baseline = Path(args.baseline) if args.baseline else DEFAULT_BASELINE
    if args.update_baseline:
        return _update(run_dir, baseline, args.per_image)

    run_df = _read_run(run_dir, args.per_image)
    if run_df.empty:
        raise CheckError(f"{run_dir} holds no scored cells; nothing to check")
    if not baseline.is_file():
        raise CheckError(
            f"baseline {baseline} not found; give --baseline FILE, or create it from this run with "
            f"'python -m bench check {run_dir} --baseline {baseline} --update-baseline'"
        )
    if args.per_image:
        pi = per_image_path(baseline)
        if not pi.is_file():
            raise CheckError(
                f"per-image baseline {pi} not found; create it with 'python -m bench check {run_dir} "
                f"--baseline {baseline} --per-image --update-baseline'"
            )
        base_df = read_baseline(pi, per_image=True)
        # per-image baselines hold the closed-form methods only; other methods are gated by their cell means
        run_df = run_df[run_df["method"].isin(set(base_df["method"]))]
        baseline = pi
    else:
        base_df = read_baseline(baseline)

    result = compare(run_df, base_df, tolerance, per_image=args.per_image)
    if not (result["verdict"] != "new").any():
        run_scope = sorted(set(zip(run_df["dataset"], run_df["protocol"], strict=True)))
        others = _other_baselines(baseline, {d for d, _ in run_scope})
        hint = (
            f"; did you mean --baseline {others[0]}?"
            if others
            else (
                f"; add them with 'python -m bench check {run_dir} --baseline {baseline} --update-baseline'"
            )
        )
        raise CheckError(
            f"baseline {baseline} has no cells for the run's "
            f"{', '.join(f'{d} ({p} protocol)' for d, p in run_scope)}: nothing to compare{hint}"
        )

    tol_text = ", ".join(f"{m} {tolerance[m]:g}" for m in METRICS)
    print(f"quality check of {run_dir} against {baseline} (tolerance {tol_text}; higher is better)")
    # the whole table for cell means (a few dozen lines); only the cells that moved per image
    table = format_table(result, only_changed=args.per_image)
    if table:
        print(table)
    line = summary_line(result)
    verdicts = cell_verdicts(result)["verdict"]
    failing = verdicts.isin(["regression", "missing"]).any()
    if failing:
        print(line + " -> FAIL")
        if (verdicts == "missing").any():
            print(
                f"missing cells: the run lacks cells that {baseline} has; run them, or, if they were dropped on "
                f"purpose, delete their rows from {baseline} (or rerun the method and --update-baseline)",
                file=sys.stderr,
            )
        return 3
    print(line + " -> pass")
    return 0
