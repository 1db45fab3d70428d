"""The per-cell time limit: a method that hangs fails its cell, and the run goes on.

In the main thread (the in-process quality pass, where torch methods and plugins run) the limit is a
SIGALRM timer: its handler raises `CellTimeout` at the next bytecode, which also ends a `time.sleep` or a
Python loop; a long native call (one convolution) finishes first. In any other thread (the scoring pool, a
Dask worker's task thread) the timer thread raises `CellTimeout` asynchronously in the cell's thread: that
ends Python-level work, but not a thread blocked inside one native call, which Python cannot interrupt.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import signal
import threading
from collections.abc import Iterator

from bench.errors import UsageError

__all__ = ["CellTimeout", "DEFAULT_CELL_TIMEOUT", "cell_timeout", "parse_timeout", "time_limit", "note_signal",
           "clear_signal", "from_method"]  # fmt: skip

# far above any real cell on a 2-core CPU (the slowest published model on a 2K DIV2K image: under a minute)
DEFAULT_CELL_TIMEOUT = 900.0


class CellTimeout(Exception):  # noqa: N818 - reads as what happened: the cell's time ran out
    """A method ran past the per-cell time limit."""


def parse_timeout(text: str, where: str) -> float | None:
    """Seconds from `text` (a positive number; 0 or 'none' for no limit). Raises UsageError naming `where`."""
    value = text.strip().lower()
    if value in ("0", "none", "off"):
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise UsageError(
            f"{where}={text!r} is not a time limit; give seconds, e.g. {where}=600, or 0 for no limit"
        )
    return seconds


def cell_timeout(flag: str | None) -> float | None:
    """The run's per-cell limit: `--cell-timeout`, else SRBENCH_CELL_TIMEOUT, else the default."""
    if flag is not None:
        return parse_timeout(flag, "--cell-timeout")
    env = os.environ.get("SRBENCH_CELL_TIMEOUT", "").strip()
    return parse_timeout(env, "SRBENCH_CELL_TIMEOUT") if env else DEFAULT_CELL_TIMEOUT


@contextlib.contextmanager
def time_limit(seconds: float | None, what: str = "the cell") -> Iterator[None]:
    """Raise `CellTimeout` in this thread if the block runs longer than `seconds` (None: no limit)."""
    if not seconds:
        yield
        return
    message = f"timed out after {seconds:g} s (the per-cell limit; raise it with --cell-timeout)"
    in_main = threading.current_thread() is threading.main_thread()
    limit = _alarm if in_main and hasattr(signal, "setitimer") else _async_raise
    with limit(seconds, message):
        yield


@contextlib.contextmanager
def _alarm(seconds: float, message: str) -> Iterator[None]:
    def on_alarm(signum: int, frame: object) -> None:
        raise CellTimeout(message)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class _Timeout(CellTimeout):
    """Raised asynchronously (the exception's class carries no message): the message is the class's."""

    message = "timed out"

    def __init__(self, *args: object) -> None:
        super().__init__(*(args or (self.message,)))


@contextlib.contextmanager
def _async_raise(seconds: float, message: str) -> Iterator[None]:
    tid = ctypes.c_ulong(threading.get_ident())
    exc_type = type("CellTimeout", (_Timeout,), {"message": message})
    state = {"done": False, "fired": False}
    lock = threading.Lock()

    def fire() -> None:
        with lock:
            if not state["done"]:
                state["fired"] = True
                ctypes.pythonapi.PyThreadState_SetAsyncExc(tid, ctypes.py_object(exc_type))

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        with lock:
            state["done"] = True
            if state["fired"]:  # raised too late to land inside the block: withdraw it
                ctypes.pythonapi.PyThreadState_SetAsyncExc(tid, None)


# A KeyboardInterrupt raised by a method is that cell's failure; one raised by the user's Ctrl-C or SIGTERM
# stops the run. The signal handlers (bench.runner, bench.cli) note the signal before raising.
_signalled = threading.Event()


def note_signal() -> None:
    """Record that the KeyboardInterrupt about to be raised comes from a signal (Ctrl-C, SIGTERM)."""
    _signalled.set()


def clear_signal() -> None:
    _signalled.clear()


def from_method(exc: BaseException) -> bool:
    """True when `exc`, raised while a method ran, is the method's failure rather than the user stopping."""
    return not (isinstance(exc, KeyboardInterrupt) and _signalled.is_set())
