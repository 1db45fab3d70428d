"""`dir:PATH`: score SR images another tool already produced, under the paper protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.api import MethodInfo, SampleRef
from bench.data import IMAGE_SUFFIXES, dataset_manifests, load_rgb
from bench.errors import MethodError, UsageError

# accepted names for image <name> at scale <s>, looked up in PATH/<dataset>/x<s>/ then PATH/<dataset>/
PATTERNS = ("{name}_x{s}", "{name}x{s}", "{name}_X{s}", "{name}X{s}", "{name}_SR", "{name}")


class StoredOutputs:
    """Looks up the SR image for each sample under `root`; `upscale` alone cannot know which image.

    Layout: `root/<dataset>/x<scale>/<name>{_x<s>,x<s>,_SR,}.<png|bmp|...>`, or the same directly under
    `root/<dataset>/` (e.g. `out/set5/x4/baby_x4.png` or `out/set5/baby.png`). The dataset folder may
    be the registry name (`set5`) or its display folder name (`Set5`).
    """

    needs_ref = True
    thread_safe = True

    def __init__(self, root: str, *, scale: int, device: str = "cpu", **_: object) -> None:
        if not root:
            raise UsageError("dir: needs a folder, e.g. --methods dir:outputs/mymodel")
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise UsageError(
                f"dir:{root}: folder not found; give the folder holding <dataset>/x<scale>/ images"
            )
        self.name = f"dir:{root}"
        self.scale = int(scale)
        self.device = "cpu"

    def find(self, ref: SampleRef) -> Path:
        folder_names = [ref.dataset]
        m = dataset_manifests().get(ref.dataset)
        if m:
            folder_names.append(m["folder"])
        tried = []
        for ds in folder_names:
            for sub in (Path(ds) / f"x{ref.scale}", Path(ds) / f"X{ref.scale}", Path(ds)):
                for pat in PATTERNS:
                    stem = pat.format(name=ref.image, s=ref.scale)
                    for suf in IMAGE_SUFFIXES:
                        p = self.root / sub / f"{stem}{suf}"
                        if p.is_file():
                            return p
                tried.append(str(self.root / sub))
        raise MethodError(
            f"no SR image for {ref.dataset}/{ref.image} x{ref.scale} under {self.root}: looked in "
            f"{', '.join(dict.fromkeys(tried))} for {ref.image}_x{ref.scale}.png, {ref.image}.png or similar"
        )

    def upscale_ref(self, lr: np.ndarray, ref: SampleRef) -> np.ndarray:
        sr, _ = load_rgb(self.find(ref))
        return sr

    def upscale(self, lr: np.ndarray) -> np.ndarray:
        raise MethodError(
            f"{self.name} scores stored images and needs to know which image: run it through the benchmark"
        )

    def info(self) -> MethodInfo:
        return MethodInfo(
            name=self.name,
            scale=self.scale,
            device="cpu",
            params=0,
            macs_720p=None,
            extra={"source": str(self.root)},
        )
