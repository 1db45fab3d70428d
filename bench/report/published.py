"""Published PSNR/SSIM numbers from the literature, read from `published.toml` with their sources."""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from bench.errors import UsageError

__all__ = ["PublishedScore", "load_published"]


@dataclass(frozen=True)
class PublishedScore:
    """One published number: `psnr` in dB, `ssim` (NaN where the source reports PSNR only)."""

    method: str
    dataset: str
    scale: int
    protocol: str
    psnr: float
    ssim: float
    comparable: bool
    source: str
    note: str = ""
    flag: str = ""  # V verified as text, I read from an image of the table, U unconfirmed ("" = not flagged)


def load_published(path: str | Path | None = None) -> list[PublishedScore]:
    """Read published numbers; `path` None reads the copy shipped in `bench/report/published.toml`.

    Raises UsageError when the file is missing or malformed (the message names the bad entry).
    """
    try:
        if path is None:
            text = resources.files("bench.report").joinpath("published.toml").read_text("utf-8")
        else:
            text = Path(path).read_text("utf-8")
        data = tomllib.loads(text)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read published numbers from {path or 'published.toml'}: {exc}") from exc

    scores: list[PublishedScore] = []
    for i, table in enumerate(data.get("table", [])):
        try:
            for dataset, by_scale in table["scores"].items():
                for scale_key, score in by_scale.items():
                    scores.append(
                        PublishedScore(
                            method=table["method"],
                            dataset=dataset,
                            scale=int(str(scale_key).lstrip("x")),
                            protocol=table["protocol"],
                            psnr=float(score["psnr"]),
                            ssim=float(score.get("ssim", math.nan)),
                            comparable=bool(table.get("comparable", True)),
                            source=table["source"],
                            note=table.get("note", ""),
                            flag=str(score.get("flag", "")),
                        )
                    )
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(
                f"published table #{i + 1} in {path or 'published.toml'} is malformed ({exc!r}); "
                "expected method, protocol, source and scores.<dataset>.x<scale> = {{ psnr = ..., ssim = ... }}"
            ) from exc
    return scores
