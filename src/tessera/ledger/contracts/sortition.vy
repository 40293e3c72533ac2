# pragma version ~=0.4.3
"""
@title Sortition
@notice Draw `k` distinct accounts out of a list of candidates from a public
        seed: a partial Fisher-Yates shuffle keyed by keccak256(seed, i).
        Anyone can recompute a draw from the seed and the candidates. Used by
        the market to assign verifiers to a query; the committee draw uses the
        same function.
@dev Stateless: a module of internal functions only.
"""

MAX_CANDIDATES: constant(uint256) = 64
MAX_DRAWN: constant(uint256) = 16


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
