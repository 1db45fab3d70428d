"""Read one run folder (quality/summary/latency/methods CSVs, env.json, config.json) for the report."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.errors import UsageError

__all__ = ["Run", "load_run", "DATASET_NAMES", "dataset_label"]

# Display names as papers print them; unknown names are shown as they are.
DATASET_NAMES = {
    "set5": "Set5",
    "set14": "Set14",
    "b100": "B100",
    "bsd100": "B100",
    "urban100": "Urban100",
    "manga109": "Manga109",
    "div2k-val": "DIV2K val",
    "sample": "sample",
}

_QUALITY_COLUMNS = ("method", "dataset", "scale", "image", "psnr", "ssim")
_SUMMARY_COLUMNS = ("method", "dataset", "scale", "psnr", "ssim")


def dataset_label(name: str) -> str:
    return DATASET_NAMES.get(name, name)


@dataclass(frozen=True)
class Run:
    """A run folder's tables (pandas) and records; `latency`/`methods` are None when absent."""

    path: Path
    quality: pd.DataFrame
    summary: pd.DataFrame
    latency: pd.DataFrame | None
    methods: pd.DataFrame | None
    env: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # files the run skipped, "dataset/image: reason"

    def _ordered(self, column: str) -> list[str]:
        """Values of `column` in the order the run asked for them (config.json), else first appearance."""
        seen = list(dict.fromkeys(self.summary[column].tolist() + self.quality[column].tolist()))
        wanted = self.config.get(f"{column}s")
        if isinstance(wanted, list):
            ordered = [v for v in wanted if v in seen]
            return ordered + [v for v in seen if v not in ordered]
        return seen

    @property
    def method_order(self) -> list[str]:
        return self._ordered("method")

    @property
    def dataset_order(self) -> list[str]:
        return self._ordered("dataset")

    @property
    def scales(self) -> list[int]:
        return sorted({int(s) for s in self.summary["scale"]} | {int(s) for s in self.quality["scale"]})

    @property
    def columns(self) -> list[tuple[str, int]]:
        """(dataset, scale) pairs present in summary.csv, datasets first, in run order."""
        present = {(d, int(s)) for d, s in zip(self.summary["dataset"], self.summary["scale"], strict=True)}
        return [(d, s) for d in self.dataset_order for s in self.scales if (d, s) in present]

    @property
    def protocol(self) -> str:
        if "protocol" in self.config:
            return str(self.config["protocol"])
        if "protocol" in self.summary.columns and len(self.summary):
            return str(self.summary["protocol"].iloc[0])
        return "paper"

    @property
    def method_info(self) -> dict[tuple[str, int], pd.Series]:
        """methods.csv rows by (method, scale); the first row wins where a method ran on several devices."""
        info: dict[tuple[str, int], pd.Series] = {}
        if self.methods is not None:
            for _, m in self.methods.iterrows():
                info.setdefault((str(m["name"]), int(m["scale"])), m)
        return info

    @property
    def matmul_gflops(self) -> float | None:
        """The probe's float32 matrix-product rate (env.json), None when absent or not a positive number."""
        try:
            peak = float(self.env.get("matmul_gflops"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
        return peak if math.isfinite(peak) and peak > 0 else None

    @property
    def ok_quality(self) -> pd.DataFrame:
        """Per-image rows that scored (status ok, or no status column)."""
        if "status" not in self.quality.columns:
            return self.quality
        return self.quality[self.quality["status"].fillna("ok") == "ok"]

    @property
    def failed_quality(self) -> pd.DataFrame:
        if "status" not in self.quality.columns:
            return self.quality.iloc[0:0]
        return self.quality[self.quality["status"].fillna("ok") != "ok"]


def _read_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=list(required))  # a table with no rows (e.g. no method to describe)
    except (OSError, pd.errors.ParserError) as exc:
        raise UsageError(f"cannot read {path}: {exc}; re-run 'python -m bench run' to rewrite it") from exc
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise UsageError(
            f"{path} lacks columns {', '.join(missing)} (has {', '.join(map(str, frame.columns))}); "
            "it was not written by this version of 'python -m bench run'"
        )
    if "scale" in frame.columns:
        frame["scale"] = frame["scale"].astype(int)
    for name in ("method", "dataset", "image"):
        if name in frame.columns:
            frame[name] = frame[name].astype(str)
    return frame


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from exc
    return data if isinstance(data, dict) else {}


def load_run(run_dir: str | Path) -> Run:
    """Load the run folder `run_dir`; raises UsageError when it is not a run folder."""
    path = Path(run_dir)
    if not (path / "quality.csv").is_file() or not (path / "summary.csv").is_file():
        raise UsageError(
            f"{path} is not a run folder: expected quality.csv and summary.csv in it; "
            "create one with 'python -m bench run --out DIR'"
        )
    latency_path, methods_path = path / "latency.csv", path / "methods.csv"
    return Run(
        path=path,
        quality=_read_csv(path / "quality.csv", _QUALITY_COLUMNS),
        summary=_read_csv(path / "summary.csv", _SUMMARY_COLUMNS),
        latency=_read_csv(latency_path, ("method", "scale", "device", "median_ms"))
        if latency_path.is_file()
        else None,
        methods=_read_csv(methods_path, ("name", "scale")) if methods_path.is_file() else None,
        env=_read_json(path / "env.json"),
        config=_read_json(path / "config.json"),
        problems=_read_problems(path / "problems.json"),
    )


def _read_problems(path: Path) -> list[str]:
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError):
        return [f"{path.name} is unreadable: the list of skipped files is lost"]
    return [str(p) for p in data] if isinstance(data, list) else []
