"""Fuzz every decoder coverage-guided (atheris), at least 10^5 inputs each, time-bounded.

    python benchmarks/fuzz.py [--inputs 100000] [--seconds 120] [--jobs 2] [--json] [NAME ...]

The decoders, their seeds and the runner are ``tests/fuzz/decoders.py`` and
``tests/fuzz/run_atheris.py`` (the suite runs a short version of the same);
this is the long run whose figures ``docs/reliability.md`` records.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fuzz"))

from run_atheris import main

if __name__ == "__main__":
    args = sys.argv[1:]
    defaults = {"--inputs": "100000", "--seconds": "120", "--jobs": "2"}
    for flag, value in defaults.items():
        if flag not in args:
            args += [flag, value]
    sys.exit(main(args))
