"""The VDAF syntax of draft-irtf-cfrg-vdaf-18, §5.

Error convention for all VDAFs in :mod:`tessera.crypto`:

* malformed encodings (wrong length, out-of-range field element, trailing bits) raise
  :class:`tessera.errors.DecodeError` (a ``ValueError``);
* a report that fails verification (bad proof, joint-randomness mismatch, failed
  sketch) raises :class:`tessera.errors.InvalidProof`;
* misuse by the caller (wrong ``rand``/``nonce`` size, invalid measurement or
  aggregation parameter) raises a plain ``ValueError``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Generic, TypeVar

from tessera.crypto.xof import format_dst

Measurement = TypeVar("Measurement")
AggParam = TypeVar("AggParam")
PublicShare = TypeVar("PublicShare")
InputShare = TypeVar("InputShare")
OutShare = TypeVar("OutShare")
AggShare = TypeVar("AggShare")
AggResult = TypeVar("AggResult")
VerifyState = TypeVar("VerifyState")
VerifierShare = TypeVar("VerifierShare")
VerifierMessage = TypeVar("VerifierMessage")


class Vdaf(
    ABC,
    Generic[
        Measurement,
        AggParam,
        PublicShare,
        InputShare,
        OutShare,
        AggShare,
        AggResult,
        VerifyState,
        VerifierShare,
        VerifierMessage,
    ],
):
    """A verifiable distributed aggregation function (§5)."""

    ID: int
    VERIFY_KEY_SIZE: int
    RAND_SIZE: int
    NONCE_SIZE: int
    SHARES: int
    ROUNDS: int

    def domain_separation_tag(self, usage: int, ctx: bytes) -> bytes:
        """XOF domain-separation tag for this VDAF, usage and application context."""
        return format_dst(0, self.ID, usage) + ctx

    # -- sharding -------------------------------------------------------------------

    @abstractmethod
    def shard(
        self, ctx: bytes, measurement: Measurement, nonce: bytes, rand: bytes
    ) -> tuple[PublicShare, list[InputShare]]:
        """Split a measurement into a public share and one input share per aggregator."""

    # -- verification ---------------------------------------------------------------

    @abstractmethod
    def is_valid(self, agg_param: AggParam, previous_agg_params: list[AggParam]) -> bool:
        """Whether a report may be aggregated under ``agg_param`` given earlier uses."""

    @abstractmethod
    def verify_init(
        self,
        verify_key: bytes,
        ctx: bytes,
        agg_id: int,
        agg_param: AggParam,
        nonce: bytes,
        public_share: PublicShare,
        input_share: InputShare,
    ) -> tuple[VerifyState, VerifierShare]:
        """First verification step of aggregator ``agg_id``."""

    @abstractmethod
    def verifier_shares_to_message(
        self, ctx: bytes, agg_param: AggParam, verifier_shares: Sequence[VerifierShare]
    ) -> VerifierMessage:
        """Combine the aggregators' verifier shares into the round's verifier message."""

    @abstractmethod
    def verify_next(
        self, ctx: bytes, state: VerifyState, verifier_message: VerifierMessage
    ) -> tuple[VerifyState, VerifierShare] | OutShare:
        """Next verification step; returns the output share once verification completes."""

    # Draft-17 and earlier names of the verification steps.
    def prep_init(
        self,
        verify_key: bytes,
        ctx: bytes,
        agg_id: int,
        agg_param: AggParam,
        nonce: bytes,
        public_share: PublicShare,
        input_share: InputShare,
    ) -> tuple[VerifyState, VerifierShare]:
        """Alias of :meth:`verify_init`."""
        return self.verify_init(
            verify_key, ctx, agg_id, agg_param, nonce, public_share, input_share
        )

    def prep_shares_to_prep(
        self, ctx: bytes, agg_param: AggParam, prep_shares: Sequence[VerifierShare]
    ) -> VerifierMessage:
        """Alias of :meth:`verifier_shares_to_message`."""
        return self.verifier_shares_to_message(ctx, agg_param, prep_shares)

    def prep_next(
        self, ctx: bytes, state: VerifyState, prep_msg: VerifierMessage
    ) -> tuple[VerifyState, VerifierShare] | OutShare:
        """Alias of :meth:`verify_next`."""
        return self.verify_next(ctx, state, prep_msg)

    # -- aggregation ----------------------------------------------------------------

    @abstractmethod
    def agg_init(self, agg_param: AggParam) -> AggShare:
        """An empty aggregate share."""

    @abstractmethod
    def agg_update(self, agg_param: AggParam, agg_share: AggShare, out_share: OutShare) -> AggShare:
        """Add an output share into an aggregate share."""

    @abstractmethod
    def merge(self, agg_param: AggParam, agg_shares: Sequence[AggShare]) -> AggShare:
        """Sum aggregate shares."""

    def aggregate(self, agg_param: AggParam, out_shares: Sequence[OutShare]) -> AggShare:
        """Aggregate a batch of output shares."""
        agg_share = self.agg_init(agg_param)
        for out_share in out_shares:
            agg_share = self.agg_update(agg_param, agg_share, out_share)
        return agg_share

    @abstractmethod
    def unshard(
        self, agg_param: AggParam, agg_shares: Sequence[AggShare], num_measurements: int
    ) -> AggResult:
        """Combine the aggregate shares into the aggregate result."""

    # -- encodings ------------------------------------------------------------------

    @abstractmethod
    def encode_public_share(self, public_share: PublicShare) -> bytes:
        """Wire encoding of a public share."""

    @abstractmethod
    def decode_public_share(self, encoded: bytes) -> PublicShare:
        """Strict decoding of a public share."""

    @abstractmethod
    def encode_input_share(self, input_share: InputShare) -> bytes:
        """Wire encoding of an input share."""

    @abstractmethod
    def decode_input_share(self, agg_id: int, encoded: bytes) -> InputShare:
        """Strict decoding of aggregator ``agg_id``'s input share."""

    @abstractmethod
    def encode_verifier_share(self, verifier_share: VerifierShare) -> bytes:
        """Wire encoding of a verifier share."""

    @abstractmethod
    def decode_verifier_share(self, state: VerifyState, encoded: bytes) -> VerifierShare:
        """Strict decoding of a verifier share, given the decoder's state."""

    @abstractmethod
    def encode_verifier_message(self, verifier_message: VerifierMessage) -> bytes:
        """Wire encoding of a verifier message."""

    @abstractmethod
    def decode_verifier_message(self, state: VerifyState, encoded: bytes) -> VerifierMessage:
        """Strict decoding of a verifier message, given the decoder's state."""

    @abstractmethod
    def encode_agg_param(self, agg_param: AggParam) -> bytes:
        """Wire encoding of an aggregation parameter."""

    @abstractmethod
    def decode_agg_param(self, encoded: bytes) -> AggParam:
        """Strict decoding of an aggregation parameter."""

    @abstractmethod
    def encode_agg_share(self, agg_share: AggShare) -> bytes:
        """Wire encoding of an aggregate share (also used for output shares)."""

    @abstractmethod
    def decode_agg_share(self, agg_param: AggParam, encoded: bytes) -> AggShare:
        """Strict decoding of an aggregate share."""
