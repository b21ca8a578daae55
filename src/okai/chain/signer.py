"""The account that signs registry transactions.

The key comes from `OKAI_PRIVATE_KEY`, or from an eth-account keystore file
(`OKAI_KEYSTORE`, unlocked with `OKAI_KEYSTORE_PASSWORD`). On the `dev` network, with
neither set, it is anvil's well-known account 0; that key is public knowledge, so it is
refused on every other network. No message raised here ever contains key material, and
the original exceptions (which might quote it) are not chained.
"""

from __future__ import annotations

from eth_account import Account
from eth_account.signers.local import LocalAccount

from okai.chain.errors import SignerError
from okai.config import Network, Secrets
from okai.documents import read_document
from okai.errors import ConfigFileError

DEV_PRIVATE_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
"""anvil's account 0 (mnemonic "test test ... junk"): for the local stack only."""

DEV_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"

KEYSTORE_HINT = "OKAI_KEYSTORE names an eth-account keystore: a JSON file"


def _from_key(key: str, source: str) -> LocalAccount:
    try:
        account: LocalAccount = Account.from_key(key.strip())
    except Exception:
        raise SignerError(
            f"{source} is not a valid private key", hint="expected 32 bytes as hex (0x + 64 hex)"
        ) from None
    return account


def _from_keystore(secrets: Secrets) -> LocalAccount:
    path = secrets.keystore
    assert path is not None
    if secrets.keystore_password is None:
        raise SignerError(
            f"OKAI_KEYSTORE is set ({path}) but OKAI_KEYSTORE_PASSWORD is not",
            hint="export OKAI_KEYSTORE_PASSWORD with the keystore's password",
        )
    keystore = read_document(path, "json", error=ConfigFileError, hint=KEYSTORE_HINT)
    try:
        key = Account.decrypt(keystore, secrets.keystore_password.get_secret_value())
    except Exception:
        raise SignerError(
            f"cannot unlock the keystore {path}",
            hint="check OKAI_KEYSTORE_PASSWORD and that the file is an eth-account keystore",
        ) from None
    return _from_key("0x" + bytes(key).hex(), f"the key in {path}")


def load_signer(network: Network, secrets: Secrets) -> LocalAccount:
    """The signing account for `network`; refuses the public dev key off the dev network."""
    if secrets.private_key is not None:
        account = _from_key(secrets.private_key.get_secret_value(), "OKAI_PRIVATE_KEY")
    elif secrets.keystore is not None:
        account = _from_keystore(secrets)
    elif network.is_dev:
        return _from_key(DEV_PRIVATE_KEY, "the dev key")
    else:
        raise SignerError(
            f"no signing key for network {network.name}",
            hint="set OKAI_PRIVATE_KEY, or OKAI_KEYSTORE and OKAI_KEYSTORE_PASSWORD",
        )
    if not network.is_dev and account.address == DEV_ADDRESS:
        raise SignerError(
            f"refusing anvil's public dev key on network {network.name}: anyone can sign with it",
            hint="use a key of your own (OKAI_PRIVATE_KEY or OKAI_KEYSTORE)",
        )
    return account
