"""What the subcommands share: the parser that raises UsageError, exit codes, SIGTERM, list parsing."""

from __future__ import annotations

import argparse
import sys

from bench.errors import UsageError
from bench.limits import note_signal

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_REGRESSION = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT, 128 + SIGTERM, as shells report them
signals = {"terminated": False}


def on_sigterm(signum: int, frame: object) -> None:
    # SIGTERM (a job scheduler, `kill`) ends a run like Ctrl-C: rows kept, the resume command printed
    signals["terminated"] = True
    note_signal()  # the run stops (a KeyboardInterrupt a method raises itself only fails its cell)
    raise KeyboardInterrupt


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see 'python -m bench {self.prog.split()[-1]} --help')")


def csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def unique(values: list, what: str) -> list:  # type: ignore[type-arg]
    """`values` without repeats; a repeat is a note on stderr (counting an image twice skews every mean)."""
    out = list(dict.fromkeys(values))
    if len(out) < len(values):
        print(f"note: repeated {what} removed; each runs once", file=sys.stderr)
    return out


def parse_scales(text: str) -> list[int]:
    out = []
    for t in csv_list(text):
        if not t.isdigit() or not 2 <= int(t) <= 8:
            raise UsageError(f"unsupported scale {t!r}; scales are integers 2..8, e.g. --scales 2,3,4")
        out.append(int(t))
    if not out:
        raise UsageError("no scales given; use e.g. --scales 2,3,4")
    return unique(out, "scales")


def parse_sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for t in csv_list(text):
        w, _, h = t.lower().partition("x")
        if not (w.isdigit() and h.isdigit()) or int(w) < 1 or int(h) < 1:
            raise UsageError(
                f"bad size {t!r}; give WIDTHxHEIGHT of the HR output, e.g. --sizes 1280x720,1920x1080"
            )
        out.append((int(h), int(w)))
    return out
