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
    "expand_methods",
    "why_unavailable",
    "fetch_method_weights",
    "describe_method",
    "method_scales",
    "method_groups",
    "did_you_mean",
    "ENTRY_POINT_GROUP",
]

ENTRY_POINT_GROUP = "srbench.methods"
MethodFactory = Callable[..., Method]  # factory(scale=int, device=str, **kw) -> Method
# prefix factories take the text after the colon: "dir:PATH" -> factory("PATH", scale=..., device=...)
PrefixFactory = Callable[..., Method]

_METHODS: dict[str, MethodFactory] = {}
_PREFIXES: dict[str, PrefixFactory] = {}
_GROUPS: dict[str, list[str]] = {}
_unavailable: Callable[[str], str | None] = lambda name: None  # noqa: E731
_builtin: Any = None  # the `methods` package, once loaded
_loaded = False


def register_method(name: str, factory: MethodFactory, *, replace: bool = False) -> None:
    """Register `factory` under `name`; an existing name is an error unless `replace=True`."""
    if name in _METHODS and _METHODS[name] is not factory and not replace:
        raise UsageError(
            f"method name {name!r} is already registered; pick another name or pass replace=True"
        )
    _METHODS[name] = factory


def _load() -> None:
    global _loaded, _unavailable, _builtin
    if _loaded:
        return
    _loaded = True
    builtin = _builtin = importlib.import_module("methods")
    for name, factory in builtin.BUILTIN_METHODS.items():
        register_method(name, factory)
    _PREFIXES.update(builtin.PREFIX_METHODS)
    _GROUPS.update(builtin.METHOD_GROUPS)
    _unavailable = builtin.unavailable
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
    """Registered method names matching a glob pattern.

    Parameters
    ----------
    pattern : str
        A glob (``*``, ``rlfn*``).
    sort : bool
        Sorted (default) or in registration order (the order of ``--methods all``).

    Returns
    -------
    list of str
        Built-in methods, the published models and third-party plugins.

    Raises
    ------
    MethodError
        Never for a broken plugin: its entry is listed and fails only when built.

    Example
    -------
    >>> import bench
    >>> bench.list_methods("rlfn*")
    ['rlfn', 'rlfn-s']
    """
    _load()
    names = [n for n in _METHODS if fnmatch.fnmatch(n, pattern)]
    return sorted(names) if sort else names


def method_groups() -> dict[str, list[str]]:
    """Group name -> its methods, in order (`all`: every built-in method, then third-party ones)."""
    _load()
    groups = {k: list(v) for k, v in _GROUPS.items()}
    builtin = set(groups.get("all", []))
    groups["all"] = [*groups.get("all", []), *(n for n in _METHODS if n not in builtin)]
    return groups


def why_unavailable(name: str) -> str | None:
    """Why built-in method `name` cannot run here (e.g. its weights cannot be had offline), or None."""
    _load()
    return _unavailable(name)


def fetch_method_weights(name: str) -> list[str] | None:
    """Download and verify the weights of built-in method `name` (the local files); None when it has none."""
    _load()
    result: list[str] | None = _builtin.fetch_weights(name)
    return result


def method_scales(name: str) -> tuple[int, ...] | None:
    """Scales built-in method `name` supports (None: any scale, or not a built-in)."""
    _load()
    if _builtin is None or name not in _builtin.BUILTIN_METHODS:
        return None
    result: tuple[int, ...] | None = _builtin.scales(name)
    return result


def describe_method(name: str) -> dict[str, str]:
    """Kind, scales, parameters, training data, licence and weights status of a method, for `bench list`."""
    _load()
    if name not in _METHODS or _builtin is None or name not in _builtin.BUILTIN_METHODS:
        return {"kind": "plugin"}
    result: dict[str, str] = _builtin.describe(name)
    return result


def expand_methods(names: list[str]) -> tuple[list[str], list[str]]:
    """Expand group names (`all`, `zoo`, ...) and drop duplicates: (methods in order, notes for the user).

    A method that came in through a group and cannot run here (its weights cannot be had offline) is
    left out with a note; named explicitly, it stays, and building it reports the error.
    """
    groups = method_groups()
    out: list[str] = []
    notes: list[str] = []
    for name in names:
        members = groups.get(name)
        for member in members if members is not None else [name]:
            if member in out:
                if members is None:
                    notes.append(f"note: method {member} is listed twice; it runs once")
                continue
            reason = _unavailable(member) if members is not None else None
            if reason is not None:
                notes.append(f"warning: skipped {member}: {reason}")
                continue
            out.append(member)
    return out, notes


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
    """Build the method `name` for `scale` on `device`, as timm's `create_model` does for models.

    Parameters
    ----------
    name : str
        A registered name (`list_methods`) or ``dir:PATH`` for SR images another tool produced.
    scale : int
        The upscaling factor the method is bound to.
    device : str
        ``cpu`` (default), ``cuda`` or ``auto``.
    **kwargs
        Method options, e.g. ``tile=128`` or ``weights=PATH`` for the learned methods.

    Returns
    -------
    Method
        ``upscale(lr)`` maps HxWx3 uint8 RGB to (H*s)x(W*s)x3; ``info()`` gives a MethodInfo.

    Raises
    ------
    UsageError
        An unknown name (with a suggestion) or option.
    MethodError
        Building failed (WeightsError: weights missing, tampered with or not fitting).

    Example
    -------
    >>> import numpy as np, bench
    >>> m = bench.create_method("bicubic", scale=3)
    >>> m.upscale(np.zeros((4, 5, 3), np.uint8)).shape, m.info().params
    ((12, 15, 3), 0)
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
