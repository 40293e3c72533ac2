"""Crash consistency, short: one kill -9 of each kind of role mid-query, then the books.

The long run (``python benchmarks/crash.py``, 100 seeded trials) is the nightly-style job;
this is the same harness with 4 trials, one per kind of role (provider, node, verifier,
chain), with a fixed seed. It fails on any broken invariant (see the harness's docstring:
settled queries with reasons, budgets on the ledger and in the providers' stores — a
restarted provider's the moment it is back up, every provider's within a few of its
background reconciliations, asked nothing — supply, escrow, payments), and unless the
query of the verifier's trial passed: a verifier kill never stops the work, and the
restarted verifier votes on it (from what it kept, or from the record it fetches from a
node if it was down when the analyst asked).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from crash import KINDS, run


def test_kill_each_role_mid_query_books_stay_consistent() -> None:
    # the budget is checked before each trial and counts the network's start: 4 trials of
    # up to ~2 min each on a loaded machine (a restarted verifier waits 30 s for the analyst)
    report = run(trials=4, budget=900.0, seed="ci", max_delay=6.0)
    assert report["trials"] == 4, report
    assert {k: r["trials"] for k, r in report["per_role"].items()} == dict.fromkeys(KINDS, 1)
    assert report["invariants_broken"] == 0, report["failures"]
    assert report["queries"] >= 4
    assert report["per_role"]["verifier"]["passed"] == 1, report["attempts"]
