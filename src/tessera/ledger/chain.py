"""The chain the contracts run on, behind one small interface.

:class:`EmbeddedChain` is an in-process py-evm chain (eth-tester), the default;
:class:`RpcChain` talks to any Ethereum JSON-RPC endpoint with unlocked
accounts (Hardhat, Anvil, a dev Geth). Everything above this module only uses
:class:`Chain`: a web3 handle, the accounts, snapshots and mining.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

import requests
from eth_abi.abi import decode as abi_decode
from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider
from web3.providers.rpc import HTTPProvider
from web3.types import RPCEndpoint, RPCResponse, Wei

from tessera.errors import ChainUnreachable, LedgerError

if TYPE_CHECKING:  # py-evm is imported by the embedded chain only: roles talk JSON-RPC
    from eth_tester import EthereumTester

DEFAULT_ACCOUNTS = 20
#: Ether given to each pre-funded account of the embedded chain (gas money only).
DEFAULT_BALANCE_WEI = 10**24


class Chain(Protocol):
    """What the deployer and the client need from a chain."""

    @property
    def w3(self) -> Web3: ...

    @property
    def accounts(self) -> list[str]: ...

    def snapshot(self) -> int: ...

    def revert(self, snapshot: int) -> None: ...

    def mine(self, blocks: int = 1) -> None: ...


class _SerialTesterProvider(EthereumTesterProvider):
    """eth-tester is not thread-safe: one request at a time (roles of an in-process
    network call the chain from the analyst's worker threads)."""

    def __init__(self, tester: EthereumTester, lock: threading.RLock) -> None:
        super().__init__(tester)
        self._lock = lock

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        with self._lock:
            return super().make_request(method, params)


@dataclass(frozen=True)
class ChainImage:
    """An embedded chain's state: its store's entries (content-addressed, so they add to
    any fresh chain's) and its head block's hash."""

    accounts: int
    store: dict[bytes, bytes] = field(repr=False)
    head: bytes


class EmbeddedChain:
    """An in-process py-evm chain with ``accounts`` funded, unlocked accounts (thread-safe)."""

    def __init__(self, accounts: int = DEFAULT_ACCOUNTS) -> None:
        if accounts < 1:
            raise ValueError("an embedded chain needs at least one account")
        from eth_tester import EthereumTester, PyEVMBackend  # seconds to import: when used

        state = PyEVMBackend.generate_genesis_state(
            overrides={"balance": DEFAULT_BALANCE_WEI}, num_accounts=accounts
        )
        self.tester = EthereumTester(PyEVMBackend(genesis_state=state))
        self._lock = threading.RLock()
        self._w3 = Web3(_SerialTesterProvider(self.tester, self._lock))
        self._accounts = [Web3.to_checksum_address(a) for a in self.tester.get_accounts()]

    @property
    def w3(self) -> Web3:
        return self._w3

    @property
    def accounts(self) -> list[str]:
        return list(self._accounts)

    def snapshot(self) -> int:
        with self._lock:
            return int(self.tester.take_snapshot())

    def revert(self, snapshot: int) -> None:
        with self._lock:
            self.tester.revert_to_snapshot(snapshot)

    def mine(self, blocks: int = 1) -> None:
        with self._lock:
            self.tester.mine_blocks(blocks)

    def image(self) -> ChainImage:
        """The chain's whole state as it stands (its key-value store and head block): a
        fresh chain restores it (:meth:`restore`) instead of replaying the transactions."""
        with self._lock:
            backend = self.tester.backend
            store = backend.chain.chaindb.db.wrapped_db.kv_store
            head = backend.take_snapshot()
            return ChainImage(len(self._accounts), dict(store), bytes(head))

    def restore(self, image: ChainImage) -> bool:
        """Take on ``image`` if this chain is as new (at its genesis, with the image's
        number of accounts): its genesis state is then the image's, and the image's blocks
        follow from it. False, and nothing changed, otherwise."""
        with self._lock:
            backend = self.tester.backend
            if (
                len(self._accounts) != image.accounts
                or backend.chain.get_canonical_head().block_number
            ):
                return False
            backend.chain.chaindb.db.wrapped_db.kv_store.update(image.store)
            backend.revert_to_snapshot(image.head)
            return True

    def add_account(self, private_key: bytes, balance_wei: int = 10**21) -> str:
        """Unlock the account of a secp256k1 ``private_key`` and fund it from account 0."""
        if len(private_key) != 32:
            raise ValueError("private key must be 32 bytes")
        with self._lock:
            address = Web3.to_checksum_address(self.tester.add_account("0x" + private_key.hex()))
            self._w3.eth.send_transaction(
                {"from": self._accounts[0], "to": address, "value": Wei(balance_wei)}
            )
            self._accounts.append(address)
        return address


#: Selector of Solidity's and Vyper's ``Error(string)`` revert payload.
ERROR_SELECTOR = bytes.fromhex("08c379a0")


def decode_revert_data(data: bytes) -> str | None:
    """The reason string of an ``Error(string)`` revert payload, else ``None``."""
    if data[:4] != ERROR_SELECTOR:
        return None
    try:
        return str(abi_decode(["string"], data[4:])[0])
    except Exception:  # truncated or non-UTF-8 payload: no reason to report
        return None


def normalize_revert(response: RPCResponse) -> RPCResponse:
    """Rewrite a node's revert error into the geth form web3 understands.

    Hardhat answers a reverted call with ``{"message": "Error: VM Exception ...
    reverted with reason string 'x'", "data": {"data": "0x08c379a0..."}}``,
    which web3 would surface with Hardhat's prose as the reason. Geth's form,
    ``{"code": 3, "message": "execution reverted: x", "data": "0x08c379a0..."}``,
    gives the contract's own reason on every node.
    """
    error = response.get("error")
    if not isinstance(error, dict):
        return response
    data: Any = error.get("data")
    if isinstance(data, dict):
        data = data.get("data")
    if not (isinstance(data, str) and data.startswith("0x")):
        return response
    try:
        raw = bytes.fromhex(data[2:])
    except ValueError:
        return response
    message = str(error.get("message", ""))
    if not raw and "revert" not in message.lower():
        return response  # an error that merely carries empty data is no revert
    reason = decode_revert_data(raw)
    text = f"execution reverted: {reason}" if reason is not None else "execution reverted"
    return cast(RPCResponse, {**response, "error": {"code": 3, "message": text, "data": data}})


def unreachable(url: str, exc: BaseException) -> ChainUnreachable:
    """The error for a chain at ``url`` that did not answer: what happened, and what to do."""
    text = str(exc)
    if isinstance(exc, requests.exceptions.Timeout):
        why = "no answer in time"
    elif "refused" in text.lower():
        why = "connection refused"
    elif "aborted" in text.lower() or "disconnected" in text.lower() or "reset" in text.lower():
        why = "the connection was dropped mid-request"
    else:
        why = type(exc).__name__
    return ChainUnreachable(
        f"cannot reach the chain at {url} ({why}): the ledger is down or that is not its "
        "URL. Check that the chain is running (`tessera network status --dir DIR` shows "
        "it; `tessera ledger serve` starts one) and that `rpc` names it, then retry",
        url=url,
    )


class _RevertNormalizingProvider(HTTPProvider):
    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        try:
            response = super().make_request(method, params)
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise unreachable(str(self.endpoint_uri), exc) from exc
        return normalize_revert(response)


class RpcChain:
    """A JSON-RPC endpoint whose accounts the node unlocks (Hardhat, Anvil, dev Geth)."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url
        self._w3 = Web3(_RevertNormalizingProvider(url, request_kwargs={"timeout": timeout}))
        try:
            self._accounts = [Web3.to_checksum_address(a) for a in self._w3.eth.accounts]
        except ChainUnreachable:
            raise
        except Exception as exc:  # a bad URL, not JSON-RPC
            raise LedgerError(f"cannot reach the chain at {url}: {exc}") from exc

    @property
    def w3(self) -> Web3:
        return self._w3

    @property
    def accounts(self) -> list[str]:
        return list(self._accounts)

    def _rpc(self, method: str, *params: object) -> object:
        response = self._w3.provider.make_request(RPCEndpoint(method), list(params))
        if "error" in response:
            raise LedgerError(f"{method}: {response['error']}")
        return cast(object, response.get("result"))

    def snapshot(self) -> int:
        return int(str(self._rpc("evm_snapshot")), 16)

    def revert(self, snapshot: int) -> None:
        """Return to ``snapshot``; on Hardhat this consumes it (take a fresh one after)."""
        if self._rpc("evm_revert", hex(snapshot)) is not True:
            raise LedgerError(f"evm_revert: no snapshot {snapshot} on {self.url}")

    def mine(self, blocks: int = 1) -> None:
        for _ in range(blocks):
            self._rpc("evm_mine")
