"""Cheating outgoing members for resharing tests: wrappers around
:class:`~tessera.crypto.reshare.OutgoingMember` that deal or answer what an honest one
would not, signed with the member's own key (so only the checks can catch them)."""

from __future__ import annotations

from collections.abc import Sequence

from tessera.crypto.dkg import decode_dealing, encode_dealing, encode_shares
from tessera.crypto.dkg_messages import Round, SignedMessage, sign_message
from tessera.crypto.group import N, base_mul
from tessera.crypto.reshare import OutgoingMember
from tessera.crypto.seal import seal


class ResharesAnotherSecret(OutgoingMember):
    """Deals a polynomial through a value other than its share (to bias the key)."""

    def deal(self) -> SignedMessage:
        s = self.session
        coeffs = [self._rng.scalar() for _ in range(s.new_t)]
        self._coeffs = coeffs
        boxes = [
            seal(k, self._value(j).to_bytes(32, "big"), s.share_aad(self.index, j), self._rng)
            for j, k in enumerate(s.new_members, 1)
        ]
        payload = encode_dealing([base_mul(c) for c in coeffs], boxes)
        return sign_message(s, Round.RESHARE_DEALING, self.index, payload, self._key)


class SealsAWrongValue(OutgoingMember):
    """Deals honestly in public but seals a wrong value to ``victim``; when complained
    about, answers with the right value (``answer_honestly``) or the wrong one again."""

    def __init__(self, *args: object, victim: int, answer_honestly: bool, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.victim = victim
        self.answer_honestly = answer_honestly

    def deal(self) -> SignedMessage:
        honest = super().deal()
        s = self.session
        commitments, boxes = decode_dealing(honest.payload, s.new_n)
        wrong = (self._value(self.victim) + 1) % N
        forged = list(boxes)
        forged[self.victim - 1] = seal(
            s.new_members[self.victim - 1],
            wrong.to_bytes(32, "big"),
            s.share_aad(self.index, self.victim),
            self._rng,
        )
        payload = encode_dealing(list(commitments), forged)
        return sign_message(s, Round.RESHARE_DEALING, self.index, payload, self._key)

    def answer(self, complaints: Sequence[SignedMessage]) -> SignedMessage | None:
        if self.answer_honestly:
            return super().answer(complaints)
        wrong = (self._value(self.victim) + 1) % N
        payload = encode_shares([(self.victim, wrong, 0)])
        return sign_message(self.session, Round.RESHARE_ANSWERS, self.index, payload, self._key)
