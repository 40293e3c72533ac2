"""Node identities: addresses, signatures, key files and the `tessera keys` commands."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from tessera.cli import keys as keys_cli
from tessera.cli.main import app
from tessera.errors import ConfigError, DecodeError
from tessera.node import identity as identity_module
from tessera.node.identity import (
    CURVE_ORDER,
    Identity,
    address_of,
    load_keystore,
    recover_public_key,
    save_keystore,
    to_checksum_address,
    verify_signature,
)

FAST = 2  # scrypt cost for tests (the default, 2**18, takes about a second)
DIGEST = hashlib.sha256(b"tessera").digest()


# -- keys and addresses ---------------------------------------------------------------------


def test_key_one_is_the_generator() -> None:
    one = Identity((1).to_bytes(32, "big"))
    assert one.public_key.hex() == (
        "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
    )
    assert one.address == "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"


@given(st.integers(min_value=1, max_value=CURVE_ORDER - 1))
def test_address_agrees_with_eth_account(secret: int) -> None:
    key = secret.to_bytes(32, "big")
    assert Identity(key).address == Account.from_key(key).address


@pytest.mark.parametrize(
    "address",
    [  # the test vectors of EIP-55
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ],
)
def test_eip55_vectors(address: str) -> None:
    assert to_checksum_address(address.lower()) == address
    assert to_checksum_address("0x" + address[2:].upper()) == address
    assert to_checksum_address(address) == address


@pytest.mark.parametrize(
    "bad",
    [
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD",  # checksum typo in the last letter
        "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe",
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeg",
    ],
)
def test_malformed_addresses_are_refused(bad: str) -> None:
    with pytest.raises(DecodeError):
        to_checksum_address(bad)


@pytest.mark.parametrize("secret", [0, CURVE_ORDER, CURVE_ORDER + 1])
def test_out_of_range_private_keys_are_refused(secret: int) -> None:
    with pytest.raises(ValueError):
        Identity(secret.to_bytes(32, "big"))
    with pytest.raises(ValueError):
        Identity(b"\x01" * 31)


def test_generate_is_fresh_or_reproducible() -> None:
    assert Identity.generate() != Identity.generate()
    seed = bytes(range(32))
    assert Identity.generate(seed) == Identity.generate(seed) == Identity(seed)


def test_repr_does_not_show_the_key() -> None:
    ident = Identity(bytes([0xAB]) * 32)
    assert "ab" * 8 not in repr(ident).lower()
    assert ident.address in repr(ident)


# -- signatures -----------------------------------------------------------------------------


@given(st.binary(min_size=32, max_size=32), st.integers(min_value=1, max_value=2**64))
def test_signature_verifies_and_recovers(digest: bytes, secret: int) -> None:
    ident = Identity(secret.to_bytes(32, "big"))
    sig = ident.sign(digest)
    assert len(sig) == 65
    assert verify_signature(ident.public_key, digest, sig)
    assert recover_public_key(digest, sig) == ident.public_key
    assert address_of(recover_public_key(digest, sig)) == ident.address


def test_signature_by_another_key_does_not_verify() -> None:
    alice, mallory = Identity(b"\x01" * 32), Identity(b"\x02" * 32)
    assert not verify_signature(alice.public_key, DIGEST, mallory.sign(DIGEST))


def test_signature_over_another_digest_does_not_verify() -> None:
    alice = Identity(b"\x01" * 32)
    other = hashlib.sha256(b"tesserA").digest()
    assert not verify_signature(alice.public_key, other, alice.sign(DIGEST))


@pytest.mark.parametrize("position", [0, 31, 32, 63, 64])
def test_flipped_bit_does_not_verify(position: int) -> None:
    alice = Identity(b"\x01" * 32)
    sig = bytearray(alice.sign(DIGEST))
    sig[position] ^= 0x01
    assert not verify_signature(alice.public_key, DIGEST, bytes(sig))


def test_high_s_twin_is_refused() -> None:
    # (r, n - s) with the other recovery id is the same signature in another encoding.
    alice = Identity(b"\x01" * 32)
    sig = alice.sign(DIGEST)
    s = int.from_bytes(sig[32:64], "big")
    twin = sig[:32] + (CURVE_ORDER - s).to_bytes(32, "big") + bytes([sig[64] ^ 1])
    with pytest.raises(DecodeError, match="high s"):
        recover_public_key(DIGEST, twin)
    assert not verify_signature(alice.public_key, DIGEST, twin)


@pytest.mark.parametrize("sig", [b"", b"\x00" * 65, b"\x01" * 64, b"\x01" * 64 + b"\x04"])
def test_malformed_signatures_do_not_verify(sig: bytes) -> None:
    assert not verify_signature(Identity(b"\x01" * 32).public_key, DIGEST, sig)


def test_malformed_public_key_does_not_verify() -> None:
    alice = Identity(b"\x01" * 32)
    assert not verify_signature(b"\x02" + b"\x00" * 32, DIGEST, alice.sign(DIGEST))


# -- key files ------------------------------------------------------------------------------


def test_keystore_round_trip(tmp_path: Path) -> None:
    ident = Identity.generate()
    path = tmp_path / "node.json"
    save_keystore(ident, path, "correct horse", iterations=FAST)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keystore(path, "correct horse") == ident
    assert [p.name for p in tmp_path.iterdir()] == ["node.json"]  # no temp file left


def test_keystore_is_a_standard_v3_file(tmp_path: Path) -> None:
    ident = Identity.generate()
    path = tmp_path / "node.json"
    save_keystore(ident, path, "pw", iterations=FAST)
    data = json.loads(path.read_text())
    assert data["version"] == 3 and data["crypto"]["kdf"] == "scrypt"
    assert bytes(Account.decrypt(data, "pw")) == ident.private_key


def test_keystore_written_by_eth_account_loads(tmp_path: Path) -> None:
    ident = Identity.generate()
    path = tmp_path / "wallet.json"
    path.write_text(
        json.dumps(Account.encrypt(ident.private_key, "pw", kdf="pbkdf2", iterations=2))
    )
    assert load_keystore(path, "pw") == ident


def test_default_kdf_is_standard_scrypt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    real = Account.encrypt

    def spy(
        key: bytes, password: str, kdf: str | None = None, iterations: int | None = None
    ) -> Any:
        seen.update(kdf=kdf, iterations=iterations)
        return real(key, password, kdf=kdf, iterations=FAST)

    monkeypatch.setattr(Account, "encrypt", spy)
    save_keystore(Identity.generate(), tmp_path / "k.json", "pw")
    assert seen == {"kdf": "scrypt", "iterations": None}  # eth-account's standard n = 2**18


def test_wrong_password_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "node.json"
    save_keystore(Identity.generate(), path, "right", iterations=FAST)
    with pytest.raises(ConfigError, match=r"node\.json: wrong password"):
        load_keystore(path, "wrong")


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    first, second = Identity.generate(), Identity.generate()
    path = tmp_path / "node.json"
    save_keystore(first, path, "pw", iterations=FAST)
    with pytest.raises(ConfigError, match="already exists"):
        save_keystore(second, path, "pw", iterations=FAST)
    assert load_keystore(path, "pw") == first
    save_keystore(second, path, "pw", iterations=FAST, overwrite=True)
    assert load_keystore(path, "pw") == second
    assert len(list(tmp_path.iterdir())) == 1


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"absent\.json: no such key file"):
        load_keystore(tmp_path / "absent.json", "pw")


def _corrupt(data: dict[str, Any], how: str) -> str:
    if how == "truncated":
        return json.dumps(data)[:-20]
    if how == "not an object":
        return "[1, 2, 3]"
    if how == "version 2":
        return json.dumps({**data, "version": 2})
    if how == "no kdfparams":
        crypto = {k: v for k, v in data["crypto"].items() if k != "kdfparams"}
        return json.dumps({**data, "crypto": crypto})
    if how == "unknown kdf":
        return json.dumps({**data, "crypto": {**data["crypto"], "kdf": "md5"}})
    if how == "ciphertext":
        ct = data["crypto"]["ciphertext"]
        flipped = ("0" if ct[0] != "0" else "1") + ct[1:]
        return json.dumps({**data, "crypto": {**data["crypto"], "ciphertext": flipped}})
    if how == "other address":
        return json.dumps({**data, "address": "00" * 20})
    raise AssertionError(how)


@pytest.mark.parametrize(
    ("how", "problem"),
    [
        ("truncated", "malformed JSON"),
        ("not an object", "not an Ethereum keystore v3"),
        ("version 2", "not an Ethereum keystore v3"),
        ("no kdfparams", "malformed keystore"),
        ("unknown kdf", "malformed keystore"),
        ("ciphertext", "MAC mismatch"),
        ("other address", "does not match the address"),
    ],
)
def test_corrupt_keystore_is_a_config_error(tmp_path: Path, how: str, problem: str) -> None:
    path = tmp_path / "node.json"
    save_keystore(Identity.generate(), path, "pw", iterations=FAST)
    path.write_text(_corrupt(json.loads(path.read_text()), how))
    with pytest.raises(ConfigError, match=problem) as info:
        load_keystore(path, "pw")
    assert str(path) in str(info.value)


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_link(src: str, dst: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(identity_module.os, "link", broken_link)
    with pytest.raises(OSError, match="disk full"):
        save_keystore(Identity.generate(), tmp_path / "node.json", "pw", iterations=FAST)
    assert list(tmp_path.iterdir()) == []


# -- the command line -----------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setattr(keys_cli, "KDF_ITERATIONS", FAST)
    monkeypatch.delenv("TESSERA_KEY_PASSWORD", raising=False)
    return CliRunner()


def test_cli_new_and_show(cli: CliRunner, tmp_path: Path) -> None:
    out, pw = tmp_path / "node.json", tmp_path / "pw.txt"
    pw.write_text("hunter22\n")
    made = cli.invoke(app, ["keys", "new", "--out", str(out), "--password-file", str(pw), "--json"])
    assert made.exit_code == 0, made.output
    info = json.loads(made.stdout)
    assert set(info) == {"address", "public_key", "path"} and info["path"] == str(out)
    ident = load_keystore(out, "hunter22")  # the file's first line, without the newline
    assert info == {
        "address": ident.address,
        "public_key": "0x" + ident.public_key.hex(),
        "path": str(out),
    }
    shown = cli.invoke(
        app, ["keys", "show", str(out), "--json"], env={"TESSERA_KEY_PASSWORD": "hunter22"}
    )
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == info
    text = cli.invoke(app, ["keys", "show", str(out), "--password-file", str(pw)])
    assert text.exit_code == 0 and ident.address in text.stdout


def test_cli_refuses_an_existing_file(cli: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "node.json"
    out.write_text("precious")
    res = cli.invoke(app, ["keys", "new", "--out", str(out)], env={"TESSERA_KEY_PASSWORD": "x"})
    assert res.exit_code == 19
    assert "already exists" in res.stderr
    assert out.read_text() == "precious"


def test_cli_wrong_password_and_missing_password(cli: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "node.json"
    save_keystore(Identity.generate(), out, "right", iterations=FAST)
    res = cli.invoke(app, ["keys", "show", str(out)], env={"TESSERA_KEY_PASSWORD": "wrong"})
    assert res.exit_code == 19 and "wrong password" in res.stderr
    res = cli.invoke(app, ["keys", "show", str(out)])
    assert res.exit_code == 19 and "no password" in res.stderr
    res = cli.invoke(app, ["keys", "show", str(tmp_path / "absent.json")])
    assert res.exit_code == 19 and "no such key file" in res.stderr


def test_cli_refuses_an_empty_password(cli: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "node.json"
    res = cli.invoke(app, ["keys", "new", "--out", str(out)], env={"TESSERA_KEY_PASSWORD": ""})
    assert res.exit_code == 19 and "empty password" in res.stderr
    assert not out.exists()
