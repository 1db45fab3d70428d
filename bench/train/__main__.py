"""`python -m bench.train ...` is `python -m bench train ...`: the CLI stays the one boundary."""

import sys

from bench.cli import main

if __name__ == "__main__":  # importing this module (as the structure tests do) runs nothing
    raise SystemExit(main(["train", *sys.argv[1:]]))
