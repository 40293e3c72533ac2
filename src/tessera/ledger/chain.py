"""The chain the contracts run on, behind one small interface.

:class:`EmbeddedChain` is an in-process py-evm chain (eth-tester), the default;
:class:`RpcChain` talks to any Ethereum JSON-RPC endpoint with unlocked
accounts (Hardhat, Anvil, a dev Geth). Everything above this module only uses
:class:`Chain`: a web3 handle, the accounts, snapshots and mining.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, cast

import requests
from eth_abi.abi import decode as abi_decode
from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider
from web3.providers.rpc import HTTPProvider
from web3.types import RPCEndpoint, RPCResponse, Wei

from tessera.errors import ChainUnreachable, LedgerError

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


#: Requests that change nothing a view reads: served without dropping cached views.
READ_ONLY: Final = frozenset(
    {
        "eth_call",
        "eth_chainId",
        "net_version",
        "web3_clientVersion",
        "eth_accounts",
        "eth_blockNumber",
        "eth_gasPrice",
        "eth_maxPriorityFeePerGas",
        "eth_feeHistory",
        "eth_getBalance",
        "eth_getCode",
        "eth_getStorageAt",
        "eth_getTransactionCount",
        "eth_getBlockByNumber",
        "eth_getBlockByHash",
        "eth_getTransactionByHash",
        "eth_getTransactionReceipt",
        "eth_getLogs",
        "eth_estimateGas",
    }
)
#: web3's default middleware the embedded chain goes without: checks of the chain id
#: and of block fields (``validation``: a quarter of a view's time, asking ``eth_chainId``
#: of every call), ENS names (none is used) and a gas price strategy (none is set). The
#: chain is this process's own; ``attrdict`` and ``gas_estimate`` stay.
LIGHT_MIDDLEWARE_DROPPED: Final = ("validation", "ens_name_to_address", "gas_price_strategy")
#: Views kept per head block (the trail, a query, a committee, ... of one query: a few).
VIEW_CACHE_SIZE: Final = 256


class ViewCache:
    """``eth_call`` answers by head block: a view re-read on an unchanged chain is answered
    from here instead of running the EVM again (a query's roles read its trail, its record
    on the market and its committee dozens of times between two of its blocks).

    A call runs on the head block's state (eth-tester: ``latest`` is the head's header),
    so its answer depends on the head's hash, the call and nothing else (no Tessera view
    reads ``block.timestamp``). Any request outside :data:`READ_ONLY` (a transaction, a
    filter, ``evm_mine``), and a snapshot's revert, drops every entry: a pending but
    unmined transaction changes what ``pending`` reads without a new head.
    """

    def __init__(self, size: int = VIEW_CACHE_SIZE) -> None:
        self.size = size
        self.hits = 0
        self._head = b""
        self._entries: dict[str, RPCResponse] = {}

    def serve(
        self, head: bytes, method: str, params: Any, run: Callable[[], RPCResponse], space: str
    ) -> RPCResponse:
        """``run()``'s answer to ``method(params)`` on the chain whose head is ``head``
        (from the cache for an ``eth_call`` already answered there). ``space`` names the
        caller's form of params and answers (web3's provider, the JSON-RPC server), which
        never share an entry. Call under the chain's lock."""
        if method != "eth_call":
            if method not in READ_ONLY:
                self.clear()
            return run()
        if head != self._head:
            self.clear()
            self._head = head
        key = space + repr(params)
        cached = self._entries.get(key)
        if cached is not None:
            self.hits += 1
            return cast(RPCResponse, dict(cached))
        response = run()
        if "error" not in response and len(self._entries) < self.size:
            self._entries[key] = cast(RPCResponse, dict(response))
        return response

    def clear(self) -> None:
        self._entries.clear()
        self._head = b""


class _SerialTesterProvider(EthereumTesterProvider):
    """eth-tester is not thread-safe: one request at a time (roles of an in-process
    network call the chain from the analyst's worker threads); views through the
    chain's :class:`ViewCache`."""

    def __init__(self, chain: EmbeddedChain) -> None:
        super().__init__(chain.tester)
        self._chain = chain

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        run = functools.partial(super().make_request, method, params)
        return self._chain.serve(method, params, run)


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
        self.views = ViewCache()
        self._w3 = Web3(_SerialTesterProvider(self))
        for name in LIGHT_MIDDLEWARE_DROPPED:
            self._w3.middleware_onion.remove(name)
        self._accounts = [Web3.to_checksum_address(a) for a in self.tester.get_accounts()]

    @property
    def w3(self) -> Web3:
        return self._w3

    @property
    def accounts(self) -> list[str]:
        return list(self._accounts)

    def serve(
        self, method: str, params: Any, run: Callable[[], RPCResponse], space: str = "w3"
    ) -> RPCResponse:
        """Answer one request by ``run()`` under the chain's lock, a view from the
        :class:`ViewCache` when the head has not moved since it was answered (the served
        chain's requests take this path too, in their own ``space``)."""
        with self._lock:
            head = bytes(self.tester.backend.chain.get_canonical_head().hash)
            return self.views.serve(head, method, params, run, space)

    def snapshot(self) -> int:
        with self._lock:
            return int(self.tester.take_snapshot())

    def revert(self, snapshot: int) -> None:
        with self._lock:
            self.views.clear()
            self.tester.revert_to_snapshot(snapshot)

    def mine(self, blocks: int = 1) -> None:
        with self._lock:
            self.views.clear()
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
            self.views.clear()
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
