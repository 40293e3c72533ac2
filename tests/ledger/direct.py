"""Direct contract access for the ledger tests: raw transactions and fast views.

The typed client covers what participants do; these helpers reach the admin and
contract-to-contract entry points it does not wrap (stake rules, the registry's
market-only functions) and read views without web3's contract machinery, which
costs five times the EVM call itself on the embedded chain.
"""

from __future__ import annotations

from typing import Any

from eth_utils.abi import get_abi_output_types
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.types import RPCEndpoint

from tessera.errors import LedgerError
from tessera.ledger import LedgerClient
from tessera.ledger.client import TX_GAS, revert_reason


def send(client: LedgerClient, fn: ContractFunction) -> None:
    """Send ``fn`` as ``client.account``; a revert raises LedgerError with its reason."""
    w3 = client.chain.w3
    try:
        tx_hash = fn.transact({"from": client.account, "gas": TX_GAS})
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    except Exception as exc:
        raise LedgerError(str(exc), reason=revert_reason(exc)) from exc
    if receipt["status"] != 1:
        before = int(receipt["blockNumber"]) - 1
        try:
            fn.call({"from": client.account}, block_identifier=before)
        except Exception as exc:
            raise LedgerError(str(exc), reason=revert_reason(exc)) from exc
        raise LedgerError("transaction reverted", reason=None)


class Reader:
    """Views by raw ``eth_call`` (calldata and output types cached per call)."""

    def __init__(self, client: LedgerClient) -> None:
        self._w3 = client.chain.w3
        self._sender = client.account
        self._calls: dict[tuple[str, str, tuple[Any, ...]], tuple[str, list[str]]] = {}

    def __call__(self, contract: Contract, name: str, *args: Any) -> Any:
        key = (contract.address, name, args)
        call = self._calls.get(key)
        if call is None:
            fn_abi = next(
                e for e in contract.abi if e.get("type") == "function" and e.get("name") == name
            )
            call = (contract.encode_abi(name, list(args)), get_abi_output_types(fn_abi))
            self._calls[key] = call
        data, types = call
        tx = {"from": self._sender, "to": contract.address, "data": data}
        try:
            response = self._w3.provider.make_request(RPCEndpoint("eth_call"), [tx, "latest"])
        except Exception as exc:  # eth-tester raises; a JSON-RPC node answers with an error
            raise LedgerError(f"{name}: {exc}", reason=revert_reason(exc)) from exc
        if "error" in response:
            raise LedgerError(f"{name}: {response['error']}")
        decoded = self._w3.codec.decode(types, bytes.fromhex(str(response["result"])[2:]))
        return decoded[0] if len(decoded) == 1 else decoded

    def block_number(self) -> int:
        result = self._w3.provider.make_request(RPCEndpoint("eth_blockNumber"), [])["result"]
        return result if isinstance(result, int) else int(str(result), 16)  # eth-tester: an int
