"""Dataset manifests (package data `bench/datasets/*.toml`): names, files, sha256s and download sources."""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from bench.errors import UsageError, did_you_mean

__all__ = ["MANIFEST_DIR", "dataset_manifests", "list_datasets", "expected_files", "canonical_name"]

# package data: installed with the wheel, so named datasets work outside a checkout
MANIFEST_DIR = Path(__file__).resolve().parent.parent / "datasets"


@cache
def dataset_manifests() -> dict[str, dict[str, Any]]:
    """name -> parsed manifest of every `*.toml` in MANIFEST_DIR."""
    out = {}
    for p in sorted(MANIFEST_DIR.glob("*.toml")):
        with open(p, "rb") as f:
            m = tomllib.load(f)
        out[m["name"]] = m
    return out


def list_datasets() -> list[str]:
    """Names accepted by `open_dataset`: the manifest datasets and ``sample``.

    Parameters
    ----------
    None

    Returns
    -------
    list of str
        Sorted lower-case names.

    Raises
    ------
    OSError
        When a manifest shipped with srbench cannot be read (a broken installation).

    Example
    -------
    >>> import bench
    >>> {"set5", "set14", "sample"} <= set(bench.list_datasets())
    True
    """
    return sorted([*dataset_manifests(), "sample"])


def canonical_name(name: str) -> str | None:
    """The manifest name (or 'sample') matching `name` case-insensitively (`Set5` -> `set5`), else None."""
    lowered = name.strip().lower()
    return lowered if lowered in (*dataset_manifests(), "sample") else None


def unknown_dataset(name: str) -> UsageError:
    known = list_datasets()
    return UsageError(
        f"unknown dataset {name!r}; {did_you_mean(name.lower(), known)}known: {', '.join(known)} "
        f"(or a folder of HR images)"
    )


def expected_files(m: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(file name, sha256 or None) of every HR image a manifest lists."""
    if "files" in m:
        return [(f["name"], f["sha256"]) for f in m["files"]]
    first = int(m.get("file_first", 1))
    return [(m["file_pattern"].format(i=i), None) for i in range(first, first + int(m["file_count"]))]
