"""Built-in super-resolution methods, listed explicitly (no folder scanning)."""

from __future__ import annotations

from methods import interpolation

# name -> factory(scale=int, device=str, **kw) -> Method
BUILTIN_METHODS = {name: interpolation.factory(name) for name in interpolation.KERNEL_OF}


def _dir_factory(path: str, **kw):  # type: ignore[no-untyped-def]
    from methods.directory import StoredOutputs

    return StoredOutputs(path, **kw)


# "prefix:ARG" names: dir:PATH scores SR images another tool already produced
PREFIX_METHODS = {"dir": _dir_factory}
