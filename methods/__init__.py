"""Built-in super-resolution methods, listed explicitly (no folder scanning)."""

from __future__ import annotations

import importlib
from typing import Any

from methods import interpolation
from methods.zoo.catalog import ZOO_NAMES


def _learned(module: str) -> Any:
    # torch is imported when a learned method is built, not when the registry is listed
    def make(**kw: Any) -> Any:
        return importlib.import_module(f"methods.{module}").make(**kw)

    return make


# name -> factory(scale=int, device=str, **kw) -> Method; this order is the order of `--methods all`
BUILTIN_METHODS = {name: interpolation.factory(name) for name in interpolation.KERNEL_OF}
BUILTIN_METHODS.update({name: _learned(name) for name in ("srcnn", "fsrcnn", "espcn")})


def _zoo(name: str) -> Any:
    # the published models: torch and the architecture file are imported when one is built
    def make(**kw: Any) -> Any:
        return importlib.import_module("methods.zoo.adapter").make(name, **kw)

    return make


BUILTIN_METHODS.update({name: _zoo(name) for name in ZOO_NAMES})

# networks `bench train` can train: name -> the module holding its `build_net` and `TRAINING` recipe
# (a bench.train.config.TrainingDefaults); imported only when one is trained
TRAINABLE = {"srcnn": "methods.srcnn", "fsrcnn": "methods.fsrcnn", "espcn": "methods.espcn"}

# names that stand for several methods on the command line, in this order; `all` is every built-in
METHOD_GROUPS = {
    "classical": list(interpolation.KERNEL_OF),
    "trained": list(TRAINABLE),
    "zoo": list(ZOO_NAMES),
}
METHOD_GROUPS["all"] = [*METHOD_GROUPS["classical"], *METHOD_GROUPS["trained"], *METHOD_GROUPS["zoo"]]


def unavailable(name: str) -> str | None:
    """Why method `name` cannot run here (its weights cannot be had offline), or None when it can."""
    if name not in ZOO_NAMES:
        return None
    from methods.zoo.availability import why_unavailable

    return why_unavailable(name)


def _dir_factory(path: str, **kw):  # type: ignore[no-untyped-def]
    from methods.directory import StoredOutputs

    return StoredOutputs(path, **kw)


# "prefix:ARG" names: dir:PATH scores SR images another tool already produced
PREFIX_METHODS = {"dir": _dir_factory}


def scales(name: str) -> tuple[int, ...] | None:
    """The scales method `name` exists at (published models: those with official weights); None: any."""
    if name not in ZOO_NAMES:
        return None
    from methods.zoo.catalog import scales_of

    return scales_of(name)


def fetch_weights(name: str) -> list[str] | None:
    """Download and verify every checkpoint of method `name`: the local files; None when it has none to fetch."""
    if name not in ZOO_NAMES:
        return None
    from methods.zoo.catalog import checkpoints
    from methods.zoo.weights import checkpoint_path

    return [str(checkpoint_path(c)) for c in checkpoints() if c.method == name]


def describe(name: str) -> dict[str, str]:
    """What `bench list` shows of method `name`: kind, scales, parameters, training data, licence, weights."""
    if name in ZOO_NAMES:
        from methods.zoo.availability import weights_present
        from methods.zoo.catalog import checkpoints

        cks = [c for c in checkpoints() if c.method == name]
        return {
            "kind": "published",
            "scales": ",".join(f"x{s}" for c in cks for s in c.scales),
            "params": "/".join(f"{c.params / 1000:.0f}K" for c in cks),
            "data": cks[0].trained_on,
            "license": cks[0].license.split(" ")[0].rstrip(";,"),
            "weights": "present" if weights_present(name) else "download on first use",
        }
    kind = "classical" if name in METHOD_GROUPS["classical"] else "trained here"
    trained = kind != "classical"
    return {"kind": kind, "scales": "x2,x3,x4" if trained else "any", "params": "", "data": "291+T91" if trained else "",
            "license": "MIT" if trained else "", "weights": "shipped" if trained else ""}  # fmt: skip
