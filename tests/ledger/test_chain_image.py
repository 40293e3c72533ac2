"""A deployment on a fresh embedded chain is imaged; the next fresh chain with the same
accounts and parameters takes the image on instead of replaying the deployment, and ends
in the very state a replay would have reached."""

from __future__ import annotations

from tessera.ledger import EmbeddedChain, LedgerClient, deploy
from tessera.ledger.deploy import _IMAGES


def _state(chain: EmbeddedChain) -> tuple[int, bytes]:
    latest = chain.w3.eth.get_block("latest")
    return int(latest["number"]), bytes(latest["stateRoot"])


def test_an_imaged_deployment_reaches_the_state_a_replay_reaches() -> None:
    params = {"verifiers_per_query": 2, "min_stake": 77, "slash_amount": 33}
    first = EmbeddedChain(accounts=2)
    key_count = len(_IMAGES)
    replayed = deploy(first, **params)  # type: ignore[arg-type]
    assert len(_IMAGES) in (key_count, key_count + 1)  # imaged (or was)

    second = EmbeddedChain(accounts=2)
    restored = deploy(second, **params)  # type: ignore[arg-type]
    assert restored == replayed
    assert _state(second) == _state(first)
    for address in (replayed.market, replayed.registry, replayed.catalog, replayed.token):
        assert second.w3.eth.get_code(address) == first.w3.eth.get_code(address)  # type: ignore[arg-type]

    # the restored chain is a working chain: both accept the same transaction alike
    for chain in (first, second):
        admin = LedgerClient(chain, replayed, replayed.admin)
        admin.mint(chain.accounts[1], 1234)
        assert admin.balance(chain.accounts[1]) == 1234
    assert _state(second)[1] == _state(first)[1]


def test_an_image_is_not_taken_on_by_a_chain_that_is_not_new_or_not_alike() -> None:
    params = {"verifiers_per_query": 3, "min_stake": 11, "slash_amount": 5}
    deploy(EmbeddedChain(accounts=1), **params)  # type: ignore[arg-type]

    used = EmbeddedChain(accounts=1)
    used.mine(3)  # no longer at its genesis: deployed by transactions
    replayed = deploy(used, **params)  # type: ignore[arg-type]
    assert used.w3.eth.block_number > 3 and replayed.block == used.w3.eth.block_number

    other = EmbeddedChain(accounts=1)
    different = deploy(other, **{**params, "min_stake": 12})  # type: ignore[arg-type]
    registry = other.w3.eth.contract(address=different.registry, abi=_registry_abi())  # type: ignore[call-overload]
    assert registry.functions.min_stake().call() == 12

    image = EmbeddedChain(accounts=1)
    deploy(image, **params)  # type: ignore[arg-type]
    assert not EmbeddedChain(accounts=2).restore(image.image())  # other accounts: refused


def _registry_abi() -> list[dict[str, object]]:
    from tessera.ledger.compile import load_artifact

    return load_artifact("registry").abi
