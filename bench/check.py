"""Compare a run's quality scores with a baseline and name every cell that moved (the quality gate).

The committed baselines live in `BASELINE_DIR`: `sample.csv` for the built-in `sample` images and
`quality.csv` for every other dataset; `default_baseline` says which one gates a dataset. Their format
and strict reading are in `bench.baseline`.

Scope: a run is compared with the baseline cells it was asked to produce: the methods, scales and
datasets of its config.json (without one, those its summary holds), in its protocol. A partial run
(one method, one scale) is never failed for cells it did not try; they are counted as not compared.
Within that scope:
- `regression`: run < baseline - tolerance, a failed cell (status failed, NaN score) or a different
  image count (the mean is over other images, so it cannot be compared); the gate fails;
- `missing`: a baseline cell the run was asked for and lacks (a cell or image dropped); the gate fails;
- `improvement`: run > baseline + tolerance; reported, passes (update the baseline to keep the gain);
- `new`: a run cell the baseline lacks; reported, passes;
- `ok` otherwise. Both metrics are higher-is-better.

Nothing here prints: `check_run` returns a `CheckResult`, `update_baseline` an `UpdateResult`, and
`bench.cli` prints them and picks the exit code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.baseline import (
    CELL,
    METRICS,
    BaselineUpdate,
    CheckError,
    RunScope,
    key_of,
    per_image_path,
    plan_update,
    read_baseline,
    read_run_file,
    read_scope,
    write_baseline,
)
from bench.errors import UsageError

__all__ = [
    "BASELINE_DIR",
    "DEFAULT_TOLERANCE",
    "CheckError",
    "CheckResult",
    "UpdateResult",
    "parse_tolerance",
    "default_baseline",
    "compare",
    "check_run",
    "update_baseline",
]

# the committed baselines: package data, so `bench check` finds them from any folder and in an installed
# srbench; the only place that names this folder
BASELINE_DIR = Path(__file__).resolve().parent / "baselines"
SAMPLE_DATASET = "sample"  # the built-in images, gated by their own file (`sample.csv`)
DEFAULT_TOLERANCE = {"psnr": 0.01, "ssim": 0.0005}
COMPARE_COLUMNS = [*CELL, "metric", "baseline", "run", "delta", "verdict"]
# worst first: a cell's verdict is the worst of its metrics'
VERDICTS = ("regression", "missing", "improvement", "new", "ok")


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


def default_baseline(dataset: str) -> Path:
    """The committed baseline that gates `dataset`: `sample.csv` for `sample`, `quality.csv` otherwise."""
    return BASELINE_DIR / ("sample.csv" if dataset == SAMPLE_DATASET else "quality.csv")


# --- comparing ---------------------------------------------------------------------------------------


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
    run_df: pd.DataFrame,
    baseline_df: pd.DataFrame,
    tolerance: dict[str, float],
    per_image: bool = False,
    scope: RunScope | None = None,
) -> pd.DataFrame:
    """One row per (cell, metric): `method, dataset, scale, protocol[, image], metric, baseline, run,
    delta, verdict` with verdict in ok, regression, improvement, missing, new (see the module doc).

    `run_df` is a run's summary.csv (or quality.csv when `per_image`), `baseline_df` a baseline of the
    same kind. Only baseline cells inside `scope` are compared; by default the (dataset, protocol) pairs
    present in the run. Summary cells also compare `n_images` exactly. Rows are in baseline order, new
    cells last.
    """
    keys = CELL + (["image"] if per_image else [])
    tol = {**DEFAULT_TOLERANCE, **tolerance}
    metrics = list(METRICS) + ([] if per_image else ["n_images"])
    scope = scope or RunScope.of_cells(run_df)
    base = baseline_df[scope.holds(baseline_df)]
    run_by_key = {k: r for k, r in zip(key_of(run_df, keys), run_df.to_dict("records"), strict=True)}
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

    for k, b in zip(key_of(base, keys), base.to_dict("records"), strict=True):
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
    """`check: N cells ok, N regressions, N missing, N improvements[, N new ...]`."""
    counts = cell_verdicts(result)["verdict"].value_counts()
    n = {v: int(counts.get(v, 0)) for v in VERDICTS}
    text = (
        f"check: {n['ok']} cells ok, {n['regression']} regressions, {n['missing']} missing, "
        f"{n['improvement']} improvements"
    )
    if n["new"]:
        text += f", {n['new']} new (not in the baseline)"
    return text


# --- the check ---------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CheckResult:
    """What `check_run` found. The CLI prints `header`, `table`, `summary` (and `advice` on stderr) and
    turns `passed` into the exit code.

    `comparison` is `compare`'s output (one row per cell and metric); `baselines` the files compared
    with; `not_compared` the number of baseline cells outside what the run was asked for.
    """

    run_dir: Path
    baselines: tuple[Path, ...]
    tolerance: dict[str, float]
    comparison: pd.DataFrame
    per_image: bool = False
    not_compared: int = 0
    scope_source: str = ""

    @property
    def cells(self) -> pd.DataFrame:
        """One row per cell (`method, dataset, scale, protocol[, image], verdict`), worst metric first."""
        return cell_verdicts(self.comparison)

    @property
    def regressions(self) -> pd.DataFrame:
        return self.cells[self.cells["verdict"] == "regression"].reset_index(drop=True)

    @property
    def missing(self) -> pd.DataFrame:
        """Baseline cells the run was asked to produce and lacks."""
        return self.cells[self.cells["verdict"] == "missing"].reset_index(drop=True)

    @property
    def passed(self) -> bool:
        return not self.cells["verdict"].isin(["regression", "missing"]).any()

    @property
    def header(self) -> str:
        tol = ", ".join(f"{m} {self.tolerance[m]:g}" for m in METRICS)
        files = " and ".join(str(p) for p in self.baselines)
        return f"quality check of {self.run_dir} against {files} (tolerance {tol}; higher is better)"

    @property
    def table(self) -> str:
        # the whole table for cell means (a few dozen lines); only the cells that moved per image
        return format_table(self.comparison, only_changed=self.per_image)

    @property
    def summary(self) -> str:
        text = summary_line(self.comparison)
        if self.not_compared:
            text += f"; {self.not_compared} baseline cells not compared (the run was not asked for them)"
        return text + (" -> pass" if self.passed else " -> FAIL")

    @property
    def advice(self) -> str:
        """What to do about missing cells (empty when none)."""
        if self.missing.empty:
            return ""
        files = " / ".join(str(p) for p in self.baselines)
        return (
            f"missing cells: {files} has cells the run was asked for and did not produce; run them (or "
            f"--resume the run), or, if they were dropped on purpose, delete their rows from {files} "
            f"(or rerun the method and --update-baseline)"
        )


def _baselines_for(
    datasets: Iterable[str], baseline: Path | None
) -> list[tuple[Path, frozenset[str] | None]]:
    """(file, datasets it gates) to compare with: `baseline` for every dataset when given, else the
    committed default of each dataset (None: every dataset)."""
    if baseline is not None:
        return [(baseline, None)]
    groups: dict[Path, set[str]] = {}
    for d in sorted(set(datasets)):
        groups.setdefault(default_baseline(d), set()).add(d)
    return [(path, frozenset(ds)) for path, ds in groups.items()]


def _read_baselines(
    targets: list[tuple[Path, frozenset[str] | None]], run_dir: Path, per_image: bool
) -> tuple[pd.DataFrame, tuple[Path, ...]]:
    frames, used = [], []
    for path, datasets in targets:
        if not path.is_file():
            raise CheckError(
                f"baseline {path} not found; give --baseline FILE, or create it from this run with "
                f"'python -m bench check {run_dir} --baseline {path} --update-baseline'"
            )
        file = per_image_path(path) if per_image else path
        if not file.is_file():
            raise CheckError(
                f"per-image baseline {file} not found; create it with 'python -m bench check {run_dir} "
                f"--baseline {path} --per-image --update-baseline'"
            )
        df = read_baseline(file, per_image)
        frames.append(df if datasets is None else df[df["dataset"].isin(datasets)])
        used.append(file)
    return pd.concat(frames, ignore_index=True), tuple(used)


def check_run(
    run_dir: Path,
    baseline: Path | None = None,
    tolerance: dict[str, float] | None = None,
    per_image: bool = False,
) -> CheckResult:
    """Compare the run in `run_dir` with a baseline; prints nothing.

    Parameters
    ----------
    run_dir : the --out folder of a `python -m bench run` with a quality pass.
    baseline : the baseline CSV; None picks the committed one of each dataset (`default_baseline`).
    tolerance : allowed drop per metric (`parse_tolerance`); metrics left out keep `DEFAULT_TOLERANCE`.
    per_image : compare every image of the closed-form methods against `<baseline>.per_image.csv`.

    Returns
    -------
    CheckResult; `passed` is False on a regression or a missing cell the run was asked to produce.

    Raises
    ------
    UsageError when `run_dir` does not exist; CheckError when a file is absent or malformed (naming the
    file and line), or the baseline has no cell in common with the run.
    """
    tol = {**DEFAULT_TOLERANCE, **(tolerance or {})}
    run_df = read_run_file(run_dir, per_image)
    if run_df.empty:
        raise CheckError(f"{run_dir} holds no scored cells; nothing to check")
    scope = read_scope(run_dir, run_df)
    base_df, used = _read_baselines(_baselines_for(run_df["dataset"], baseline), run_dir, per_image)
    if per_image:
        # per-image baselines hold the closed-form methods only; other methods are gated by their cell means
        run_df = run_df[run_df["method"].isin(set(base_df["method"]))]
    result = compare(run_df, base_df, tol, per_image=per_image, scope=scope)
    if not (result["verdict"] != "new").any():
        raise _nothing_in_common(run_dir, run_df, used[0])
    outside = base_df.loc[~scope.holds(base_df), CELL].drop_duplicates()
    return CheckResult(run_dir, used, tol, result, per_image, len(outside), scope.source)


def _nothing_in_common(run_dir: Path, run_df: pd.DataFrame, baseline: Path) -> CheckError:
    run_scope = sorted(set(zip(run_df["dataset"], run_df["protocol"], strict=True)))
    others = _other_baselines(baseline, {d for d, _ in run_scope})
    hint = (
        f"; did you mean --baseline {others[0]}?"
        if others
        else f"; add them with 'python -m bench check {run_dir} --baseline {baseline} --update-baseline'"
    )
    return CheckError(
        f"baseline {baseline} has no cells for the run's "
        f"{', '.join(f'{d} ({p} protocol)' for d, p in run_scope)}: nothing to compare{hint}"
    )


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


# --- updating a baseline from a run ------------------------------------------------------------------


@dataclass(frozen=True)
class UpdateResult:
    """What `update_baseline` wrote; `lines()` is the report the CLI prints."""

    run_dir: Path
    files: tuple[BaselineUpdate, ...] = field(default_factory=tuple)

    def lines(self, limit: int = 40) -> list[str]:
        out = []
        for f in self.files:
            out.append(
                f"updated {f.path} from {self.run_dir} ({f.run_rows} rows of this run, {f.total_rows} rows in all):"
            )
            changes = list(f.changes)
            if len(changes) > limit:
                changes = changes[: limit - 10] + [f"  ... and {len(changes) - (limit - 10)} more lines"]
            out.extend(changes)
        paths = " ".join(str(f.path) for f in self.files)
        out.append(f"review the diff (git diff {paths}) and commit it with the change that moved the scores")
        return out


def update_baseline(run_dir: Path, baseline: Path | None = None, per_image: bool = False) -> UpdateResult:
    """Rewrite the baseline from the run in `run_dir`: its (method, dataset, protocol) groups replace
    the baseline's, other rows are kept; the per-image companion follows when it exists or `per_image`.

    `baseline` None updates the committed baseline of each dataset of the run (`default_baseline`).
    Every file is read and merged before any is written, so a refusal leaves them all as they were.
    Returns an UpdateResult; prints nothing. Raises CheckError on failed cells or a malformed file.
    """
    summary = read_run_file(run_dir, per_image=False)
    plans = []
    for path, datasets in _baselines_for(summary["dataset"], baseline):
        pi_path = per_image_path(path)
        plans.append(plan_update(run_dir, path, False, datasets))
        if per_image or pi_path.is_file():
            plans.append(plan_update(run_dir, pi_path, True, datasets))  # keep it in step with the summary
    for update, rows in plans:
        write_baseline(update.path, rows)
    return UpdateResult(run_dir, tuple(update for update, _ in plans))
