"""Name -> factory registry of methods: built-ins from `methods`, third parties via entry points."""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from bench.api import Method
from bench.errors import BenchError, MethodError, UsageError, did_you_mean

__all__ = [
    "MethodFactory",
    "register_method",
    "create_method",
    "list_methods",
    "resolve_device",
    "did_you_mean",
    "ENTRY_POINT_GROUP",
]

ENTRY_POINT_GROUP = "srbench.methods"
MethodFactory = Callable[..., Method]  # factory(scale=int, device=str, **kw) -> Method
# prefix factories take the text after the colon: "dir:PATH" -> factory("PATH", scale=..., device=...)
PrefixFactory = Callable[..., Method]

_METHODS: dict[str, MethodFactory] = {}
_PREFIXES: dict[str, PrefixFactory] = {}
_loaded = False


def register_method(name: str, factory: MethodFactory, *, replace: bool = False) -> None:
    """Register `factory` under `name`; an existing name is an error unless `replace=True`."""
    if name in _METHODS and _METHODS[name] is not factory and not replace:
        raise UsageError(f"method name {name!r} is already registered; pick another name or pass replace=True")
    _METHODS[name] = factory


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    builtin = importlib.import_module("methods")
    for name, factory in builtin.BUILTIN_METHODS.items():
        register_method(name, factory)
    _PREFIXES.update(builtin.PREFIX_METHODS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _METHODS:
            # never silently overwrite: a third-party name colliding with a built-in is skipped
            continue
        _METHODS[ep.name] = _lazy_entry_point(ep)


def _lazy_entry_point(ep: Any) -> MethodFactory:
    def factory(**kw: Any) -> Method:
        try:
            real = ep.load()
        except Exception as exc:  # a broken plugin must not take the registry down
            raise MethodError(f"cannot load method {ep.name!r} from {ep.value}: {exc}") from exc
        return real(**kw)

    return factory


def list_methods(pattern: str = "*", *, sort: bool = True) -> list[str]:
    """Registered method names matching a glob pattern, sorted (or in registration order)."""
    _load()
    names = [n for n in _METHODS if fnmatch.fnmatch(n, pattern)]
    return sorted(names) if sort else names


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when available else 'cpu'; 'cuda' without CUDA is a UsageError."""
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise UsageError(f"unknown device {device!r}; choose auto, cpu or cuda")
    if device == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda" if device == "auto" else device
    if device == "auto":
        return "cpu"
    raise UsageError("device 'cuda' was requested but torch sees no CUDA device; use --device cpu or auto")


def create_method(name: str, *, scale: int, device: str = "cpu", **kwargs: Any) -> Method:
    """Build the method `name` for `scale` on `device` ('auto', 'cpu', 'cuda').

    Raises UsageError for an unknown name (with a suggestion) and MethodError when building fails.
    """
    _load()
    prefix, sep, rest = name.partition(":")
    if sep and prefix in _PREFIXES:
        factory: Callable[..., Method] = lambda **kw: _PREFIXES[prefix](rest, **kw)  # noqa: E731
    elif name in _METHODS:
        factory = _METHODS[name]
    else:
        known = list_methods()
        raise UsageError(
            f"unknown method {name!r}; {did_you_mean(name, known)}known: {', '.join(known)}"
            f" (or dir:PATH for stored SR images)"
        )
    dev = resolve_device(device)
    try:
        return factory(scale=scale, device=dev, **kwargs)
    except BenchError:
        raise
    except Exception as exc:
        raise MethodError(f"building method {name!r} for x{scale} on {dev} failed: {exc}") from exc
