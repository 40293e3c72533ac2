"""Shared test configuration: a fast, reproducible hypothesis profile, and how the suite is
split between pytest-xdist workers (``-n 2 --dist loadgroup`` in pyproject.toml).

Each test file is one unit of work (an ``xdist_group``), so a module's fixtures (a
network of real processes, a compiled world) are built once, on one worker, and its
tests run in their order. The directories whose tests share a session fixture are one
unit each: the telemetry aggregators' processes, the served chain of the market
command line, the ledger's deployed world, the PostgreSQL server. Units are handed out
longest first (``SLOW_FIRST``, from ``pytest --durations``), so that the last one to
start is short and the two workers finish together.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "tessera",
    deadline=None,
    derandomize=True,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "tessera"))

TESTS = Path(__file__).parent

#: Directories whose tests share a session-scoped fixture: one unit of work each.
SHARED_SESSION = ("telemetry", "cli_ledger", "ledger", "store")

#: Units that take longest, longest first: seconds in one clean-clone run of the suite
#: (``--junitxml``, setup included) while two other sessions loaded the 2-core machine, so
#: about 1.7 times an idle run. Every other unit follows, in collection order; they take
#: under 20 s each.
SLOW_FIRST = (
    "ledger",  # 886, of which 388 the 64 x 256 query (now 64 x 130 on the embedded chain)
    "engine/test_local_network.py",  # 426
    "telemetry",  # 373
    "network/test_faults.py",  # 332
    "web/test_console.py",  # 323
    "test_benchmarks.py",  # 270
    "attacks/test_query_attacks.py",  # 222
    "network/test_crash_consistency.py",  # 221
    "test_cli.py",  # 202
    "web/test_demo_web.py",  # 89 idle: tessera demo --web, its network and aggregators
    "network/test_differential.py",  # 137
    "network/test_training.py",  # 124
    "engine/test_exact.py",  # 116
    "network/test_cheating.py",  # 105 (before the withholding providers)
    "learning/test_privacy_audit.py",  # 80
    "analytics/test_dp_coverage.py",  # 78
    "network/test_dkg_attacks.py",  # 72
    "engine/test_ledger_wiring.py",  # 53
    "network/test_network_cli.py",  # 53
    "analytics/test_exact_tables.py",  # 51
    "node/test_verifier_recovery.py",  # 45
    "engine/test_training.py",  # 43
    "learning/test_model_cli.py",  # 28
    "cli_ledger",  # 20
    "engine/test_withholding.py",  # 18
)


def unit_of(path: Path) -> str:
    """The unit of work of a test file: its directory's if that shares a session fixture."""
    try:
        rel = path.relative_to(TESTS)
    except ValueError:  # a test file outside tests/
        return str(path)
    if len(rel.parts) > 1 and rel.parts[0] in SHARED_SESSION:
        return rel.parts[0]
    return rel.as_posix()


def pytest_configure(config: pytest.Config) -> None:
    # xdist registers the mark; without it (-p no:xdist) it is still a known mark
    config.addinivalue_line("markers", "xdist_group(name): run these tests on one worker")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups into the test ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(unit_of(Path(item.path))))
    rank = {unit: i for i, unit in enumerate(SLOW_FIRST)}

    def order(item: pytest.Item) -> int:
        return rank.get(unit_of(Path(item.path)), len(rank))

    items.sort(key=order)  # stable: each file keeps its own order


@pytest.fixture(scope="session", autouse=True)
def _grouped_by_unit(request: pytest.FixtureRequest) -> None:
    """Refuse to run the suite split wrongly. Under ``--dist loadgroup`` xdist writes each
    test's group into its id when collecting; without it every worker builds every unit's
    heavy fixtures (pytest 9.2 with pytest-xdist 3.8 loses the groups, so pyproject.toml
    pins pytest below 9.2). Every test then errors with this message."""
    config = request.config
    # a worker's options carry ``loadgroup`` (xdist sets it from --dist); -n 0 has none
    if not getattr(config.option, "loadgroup", False) or "PYTEST_XDIST_WORKER" not in os.environ:
        return
    items = request.session.items
    lost = [item.nodeid for item in items if "@" not in item.nodeid.rsplit("]", 1)[-1]]
    if lost:
        raise pytest.UsageError(
            f"--dist loadgroup: {len(lost)} test ids carry no group (first: {lost[0]}); "
            f"pytest {pytest.__version__} and this pytest-xdist do not work together"
        )
