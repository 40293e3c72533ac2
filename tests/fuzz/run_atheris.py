"""Coverage-guided fuzzing of every decoder with atheris (libFuzzer over instrumented Python).

    python tests/fuzz/run_atheris.py [--inputs N] [--seconds S] [--jobs J] [--json] [NAME ...]

Each decoder of ``decoders.py`` runs in a process of its own (libFuzzer runs one
target a process; ``--together`` runs all in one process, the first byte of an
input picking the decoder, for short runs), started from its valid seeds, until
it has run ``--inputs`` inputs or ``--seconds`` have passed. A *crash* is any
exception other than the documented :class:`~tessera.errors.DecodeError`; the run goes
on after one and counts them. Prints per decoder the inputs run and the crashes
found (``--json``: one JSON object), and exits 1 if any decoder crashed.
``benchmarks/fuzz.py`` is the same script with the long budget.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _child(names: list[str], inputs: int, seconds: float, stats: Path, corpus: Path) -> None:
    """Fuzz ``names`` in this process; with several, the first byte picks the decoder."""
    import atheris

    sys.path.insert(0, str(HERE))
    with atheris.instrument_imports(include=["tessera", "decoders"]):
        import decoders

    table = [decoders.decoders()[n] for n in names]
    state: dict[str, Any] = {n: {"inputs": 0, "crashes": 0, "examples": []} for n in names}
    many = len(table) > 1

    def save() -> None:
        stats.write_text(json.dumps(state))

    def target(data: bytes) -> None:
        if many:
            if not data:
                return
            decoder, data = table[data[0] % len(table)], data[1:]
        else:
            decoder = table[0]
        row = state[decoder.name]
        row["inputs"] += 1
        try:
            decoder.decode(data)
        except decoder.allowed:
            pass
        except Exception as exc:
            row["crashes"] += 1
            if len(row["examples"]) < 3:
                row["examples"].append(
                    {
                        "input": data[:512].hex(),
                        "error": f"{type(exc).__name__}: {exc}"[:300],
                        "where": traceback.format_exc(limit=-3)[-1200:],
                    }
                )
            save()
        if row["inputs"] % 256 == 0:
            save()

    largest = max((p.stat().st_size for p in corpus.iterdir()), default=0)
    argv = [
        sys.argv[0],
        f"-runs={inputs * len(table)}",
        f"-max_total_time={max(1, int(seconds))}",
        f"-max_len={max(4096, 2 * largest)}",
        "-timeout=20",
        "-seed=17",
        "-print_final_stats=1",
        str(corpus),
    ]
    save()
    atheris.Setup(argv, target)
    atheris.Fuzz()


def _seed_corpus(names: list[str], corpus: Path) -> None:
    """Valid inputs, made here without instrumentation (a prefix byte picks the decoder)."""
    import decoders

    table = decoders.decoders()
    for k, name in enumerate(names):
        for i, seed in enumerate(table[name].seeds()):
            prefix = bytes([k]) if len(names) > 1 else b""
            (corpus / f"seed-{k}-{i}").write_bytes(prefix + seed)


def _run(names: list[str], inputs: int, seconds: float) -> dict[str, dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="tessera-fuzz-") as tmp:
        stats, corpus = Path(tmp) / "stats.json", Path(tmp) / "corpus"
        corpus.mkdir()
        _seed_corpus(names, corpus)
        start = time.monotonic()
        command = [sys.executable, __file__, "--child", ",".join(names)]
        command += ["--inputs", str(inputs), "--seconds", str(seconds)]
        command += ["--stats", str(stats), "--corpus", str(corpus)]
        proc = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=seconds + 600,
            check=False,
        )
        elapsed = round(time.monotonic() - start, 1)
        state: dict[str, dict[str, Any]] = (
            json.loads(stats.read_text())
            if stats.exists()
            else {n: {"inputs": 0, "crashes": 0} for n in names}
        )
        done = re.findall(r"Done (\d+) runs", proc.stderr)
        if len(names) == 1 and done:
            # libFuzzer's own count (the target's is saved every 256 inputs)
            state[names[0]]["inputs"] = max(state[names[0]]["inputs"], int(done[-1]))
        for row in state.values():
            row["seconds"] = elapsed
            if not row.get("examples"):
                row.pop("examples", None)
        if proc.returncode != 0 and not any(r["crashes"] for r in state.values()):
            for row in state.values():  # the process itself died: a native crash or a hang
                row["crashes"] = row.get("crashes", 0) or 1
                row["examples"] = [
                    {"error": f"exit {proc.returncode}", "where": proc.stderr[-1500:]}
                ]
        return state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="decoders to fuzz (default: all)")
    parser.add_argument("--inputs", type=int, default=100_000, help="inputs per decoder")
    parser.add_argument("--seconds", type=float, default=60.0, help="time bound per decoder")
    parser.add_argument("--jobs", type=int, default=1, help="decoders fuzzed at once")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--together",
        action="store_true",
        help="one process for all decoders, the first byte of an input picks one (short runs)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--stats", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child.split(","), args.inputs, args.seconds, args.stats, args.corpus)
        return 0

    sys.path.insert(0, str(HERE))
    import decoders

    names = args.names or sorted(decoders.decoders())
    unknown = set(names) - set(decoders.decoders())
    if unknown:
        parser.error(f"unknown decoders: {', '.join(sorted(unknown))}")
    start = time.monotonic()
    rows: dict[str, dict[str, Any]] = {}
    if args.together:
        rows = _run(names, args.inputs, args.seconds)
    else:
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for part in pool.map(lambda n: _run([n], args.inputs, args.seconds), names):
                rows |= part
    total = {
        "inputs": sum(r["inputs"] for r in rows.values()),
        "crashes": sum(r["crashes"] for r in rows.values()),
        "seconds": round(time.monotonic() - start, 1),
    }
    if args.json:
        print(json.dumps({"decoders": rows, "total": total}, indent=1))
    else:
        width = max(len(n) for n in names)
        print(f"{'decoder':<{width}}  {'inputs':>9}  {'crashes':>7}  {'seconds':>7}")
        for name, row in rows.items():
            print(f"{name:<{width}}  {row['inputs']:>9}  {row['crashes']:>7}  {row['seconds']:>7}")
            for ex in row.get("examples", []):
                print(f"    {ex['error']}")
        t = total
        print(f"{'total':<{width}}  {t['inputs']:>9}  {t['crashes']:>7}  {t['seconds']:>7}")
    return 1 if total["crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())
