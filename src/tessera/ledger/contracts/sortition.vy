# pragma version ~=0.4.3
"""
@title Sortition
@notice Draw `k` distinct accounts out of a list of candidates from a public
        seed: a partial Fisher-Yates shuffle keyed by keccak256(seed, i).
        Anyone can recompute a draw from the seed and the candidates. Used by
        the market to assign verifiers to a query. `_weighted_draw` draws each
        epoch's committee in the registry, by weight (`tessera.ledger.draw` is
        the same in Python).
@dev Stateless: a module of internal functions only.
"""

MAX_CANDIDATES: constant(uint256) = 64
MAX_DRAWN: constant(uint256) = 64  # a committee drawn from a full node pool


@internal
@pure
def _draw(
    seed: bytes32, candidates: DynArray[address, MAX_CANDIDATES], k: uint256
) -> DynArray[address, MAX_DRAWN]:
    """@notice `min(k, len(candidates))` distinct candidates, chosen by `seed`."""
    pool: DynArray[address, MAX_CANDIDATES] = candidates
    m: uint256 = len(pool)
    want: uint256 = min(min(k, m), MAX_DRAWN)
    drawn: DynArray[address, MAX_DRAWN] = []
    for i: uint256 in range(want, bound=MAX_DRAWN):
        r: uint256 = convert(keccak256(abi_encode(seed, i)), uint256)
        j: uint256 = i + r % (m - i)
        chosen: address = pool[j]
        pool[j] = pool[i]
        pool[i] = chosen
        drawn.append(chosen)
    return drawn


@internal
@pure
def _weighted_draw(
    seed: bytes32,
    candidates: DynArray[address, MAX_CANDIDATES],
    weights: DynArray[uint256, MAX_CANDIDATES],
    k: uint256,
) -> DynArray[address, MAX_DRAWN]:
    """
    @notice `k` distinct candidates, each step choosing one of those not yet drawn
            with probability proportional to its weight (successive sampling
            without replacement): step i takes r = keccak256(seed, i) mod the
            remaining total weight and walks the cumulative weights in the
            candidates' order. A candidate of weight 0 is never drawn. The caller
            makes sure at least `k` candidates have a positive weight.
    """
    w: DynArray[uint256, MAX_CANDIDATES] = weights
    m: uint256 = len(w)
    total: uint256 = 0
    for x: uint256 in w:
        total += x
    drawn: DynArray[address, MAX_DRAWN] = []
    for i: uint256 in range(k, bound=MAX_DRAWN):
        r: uint256 = convert(keccak256(abi_encode(seed, i)), uint256) % total
        acc: uint256 = 0
        for j: uint256 in range(m, bound=MAX_CANDIDATES):
            acc += w[j]
            if r < acc:
                drawn.append(candidates[j])
                total -= w[j]
                w[j] = 0
                break
    return drawn
