"""A provider's rules for one table, and the check of a query against them (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from tessera.analytics.local import ColumnBounds
from tessera.errors import PolicyViolation


class Asked(Protocol):
    """What a policy judges of a ticket: a query's (:class:`~tessera.protocol.query.QueryTicket`)
    or a training round's (:class:`~tessera.protocol.training.TrainingTicket`)."""

    @property
    def bounds(self) -> Mapping[str, ColumnBounds]: ...

    @property
    def operations(self) -> set[str]: ...

    @property
    def rho(self) -> float | None: ...

    @property
    def max_rows(self) -> int: ...


@dataclass(frozen=True, slots=True)
class DatasetPolicy:
    """A provider's rules for one table (allowed statistics, cohort, budget, price)."""

    allowed: frozenset[str] | None = None  # statistic kinds; None: all
    min_cohort: int = 10
    budget_rho: float = 5.0
    max_rows: int = 1_000_000  # public: the table never holds more rows
    allow_exact: bool = False  # may a query run without noise?
    price_per_query: int = 0  # credits escrowed per query / per training run
    price_per_training: int = 0
    node_share_bps: int = 2_000  # the computing nodes' share of the price (basis points)
    tags: tuple[str, ...] = ()  # catalog tags

    def __post_init__(self) -> None:
        if self.min_cohort < 1 or self.max_rows < 1 or self.budget_rho <= 0:
            raise ValueError("min_cohort, max_rows and budget_rho must be positive")
        if self.price_per_query < 0 or self.price_per_training < 0:
            raise ValueError("prices must be non-negative")
        if not 0 <= self.node_share_bps <= 10_000:
            raise ValueError("node_share_bps must be in [0, 10000]")


def admit(
    who: str,
    policy: DatasetPolicy,
    bounds: Mapping[str, ColumnBounds],
    ticket: Asked,
) -> None:
    """Refuse ``ticket`` unless ``policy`` allows it on a table with these public ``bounds``.

    Every check depends on the query and the policy only, never on the rows, so a
    refusal tells the analyst nothing about the data. ``who`` names the table in errors.
    """
    if dict(ticket.bounds) != dict(bounds):
        raise PolicyViolation(f"{who}: the query's bounds are not the table's public bounds")
    if policy.allowed is not None:
        denied = sorted(ticket.operations - policy.allowed)
        if denied:
            raise PolicyViolation(f"{who} does not allow {', '.join(denied)}")
    if ticket.rho is None and not policy.allow_exact:
        raise PolicyViolation(f"{who} requires differential privacy: pass epsilon")
    if ticket.max_rows < policy.max_rows:
        raise PolicyViolation(
            f"{who}: the query assumes at most {ticket.max_rows} rows per provider, "
            f"the table's public maximum is {policy.max_rows}"
        )
