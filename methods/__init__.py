"""Built-in super-resolution methods, listed explicitly (no folder scanning)."""

from __future__ import annotations

import importlib
from typing import Any

from methods import interpolation


def _learned(module: str) -> Any:
    # torch is imported when a learned method is built, not when the registry is listed
    def make(**kw: Any) -> Any:
        return importlib.import_module(f"methods.{module}").make(**kw)

    return make


# name -> factory(scale=int, device=str, **kw) -> Method; this order is the order of `--methods all`
BUILTIN_METHODS = {name: interpolation.factory(name) for name in interpolation.KERNEL_OF}
BUILTIN_METHODS.update({name: _learned(name) for name in ("srcnn", "fsrcnn", "espcn")})


def _dir_factory(path: str, **kw):  # type: ignore[no-untyped-def]
    from methods.directory import StoredOutputs

    return StoredOutputs(path, **kw)


# "prefix:ARG" names: dir:PATH scores SR images another tool already produced
PREFIX_METHODS = {"dir": _dir_factory}
