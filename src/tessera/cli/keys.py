"""``tessera keys``: create and inspect a node's key file (Ethereum keystore v3).

The password comes from ``--password-file`` (its first line), else from the
``TESSERA_KEY_PASSWORD`` environment variable, else from a prompt on a terminal.

Exit codes (from :data:`tessera.errors.EXIT_CODES`)::

    0   done
    19  the key file exists (``new``), is missing or malformed, the password is
        wrong, or no password was given
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tessera.cli.errors import handle_errors
from tessera.cli.ledger import emit_json
from tessera.errors import ConfigError

app = typer.Typer(
    help="Node key files: create one, show its address and public key.",
    no_args_is_help=True,
    add_completion=False,
)
_out = Console(highlight=False)

PASSWORD_ENV = "TESSERA_KEY_PASSWORD"
#: scrypt cost of new key files (``None``: eth-account's standard 2**18). Tests lower it.
KDF_ITERATIONS: int | None = None

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
PasswordFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--password-file",
        help=f"File whose first line is the password (default: ${PASSWORD_ENV}, else a prompt).",
        metavar="FILE",
    ),
]


def read_password(password_file: Path | None, *, confirm: bool) -> str:
    """The key file's password from a file, the environment, or a terminal prompt."""
    if password_file is not None:
        try:
            lines = password_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"{password_file}: cannot read the password file: {exc}") from exc
        password = lines[0] if lines else ""
        source = str(password_file)
    elif PASSWORD_ENV in os.environ:
        password, source = os.environ[PASSWORD_ENV], f"${PASSWORD_ENV}"
    elif sys.stdin.isatty():
        password = typer.prompt(
            "Key file password", hide_input=True, confirmation_prompt=confirm, err=True
        )
        source = "the prompt"
    else:
        raise ConfigError(f"no password: give --password-file or set {PASSWORD_ENV}")
    if not password:
        raise ConfigError(f"empty password from {source}")
    return password


def _describe(address: str, public_key: bytes, path: Path, as_json: bool) -> None:
    if as_json:
        emit_json({"address": address, "public_key": "0x" + public_key.hex(), "path": str(path)})
    else:
        _out.print(f"address     {address}")
        _out.print(f"public key  0x{public_key.hex()}")
        _out.print(f"key file    {path}")


@app.command()
@handle_errors
def new(
    out: Annotated[Path, typer.Option("--out", help="Where to write the key file.")],
    password_file: PasswordFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a fresh key and write it as an encrypted key file (mode 0600)."""
    from tessera.node.identity import Identity, save_keystore

    if out.exists():
        raise ConfigError(f"{out}: a key file already exists (refusing to overwrite it)")
    password = read_password(password_file, confirm=True)
    identity = Identity.generate()
    save_keystore(identity, out, password, iterations=KDF_ITERATIONS)
    _describe(identity.address, identity.public_key, out, as_json)


@app.command()
@handle_errors
def show(
    path: Annotated[Path, typer.Argument(help="The key file.")],
    password_file: PasswordFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the address and public key of a key file (decrypting it checks the password)."""
    from tessera.node.identity import load_keystore

    if not path.is_file():
        raise ConfigError(f"{path}: no such key file")
    identity = load_keystore(path, read_password(password_file, confirm=False))
    _describe(identity.address, identity.public_key, path, as_json)
