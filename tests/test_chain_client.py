"""The chain client's guards: keys, chain ID, retries and dead endpoints."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from pydantic import SecretStr

from chain_support import account, client_for, deployed, digest, rpc
from conftest import free_port
from okai.chain import (
    DEV_ADDRESS,
    DEV_PRIVATE_KEY,
    ChainError,
    RegistryClient,
    RegistryReader,
    RetryPolicy,
    RpcUnavailable,
    SignerError,
    WrongChainError,
    load_signer,
)
from okai.chain.dev import dev_network
from okai.config import PRESETS, Network, Secrets, load_settings
from okai.dev.anvil import running_anvil
from okai.errors import ConfigError, ExitCode
from okai.tls import tls_context


@pytest.fixture(scope="module")
def anvil() -> Iterator[str]:
    with running_anvil() as url:
        yield url


COSTON2 = Network.model_validate({"name": "coston2", **PRESETS["coston2"]})
DEV = Network.model_validate({"name": "dev", **PRESETS["dev"]})


def test_dev_key_is_the_default_on_dev_only() -> None:
    assert load_signer(DEV, Secrets()).address == DEV_ADDRESS
    with pytest.raises(SignerError, match="no signing key for network coston2"):
        load_signer(COSTON2, Secrets())


def test_dev_key_is_refused_off_the_dev_network(okai_home: Path) -> None:
    with pytest.raises(SignerError, match="refusing anvil's public dev key") as caught:
        load_signer(COSTON2, Secrets(private_key=SecretStr(DEV_PRIVATE_KEY)))
    assert DEV_PRIVATE_KEY[2:] not in str(caught.value)
    settings = load_settings("coston2", env={"OKAI_PRIVATE_KEY": DEV_PRIVATE_KEY})
    with pytest.raises(SignerError):
        RegistryClient.from_settings(settings, sign=True)


def test_keystore_unlocks_and_the_dev_key_in_a_keystore_is_refused(tmp_path: Path) -> None:
    mine = Account.create()
    keystore = tmp_path / "key.json"
    encrypted = Account.encrypt(mine.key, "pw", kdf="pbkdf2", iterations=1000)
    keystore.write_text(json.dumps(encrypted))
    secrets = Secrets(keystore=keystore, keystore_password=SecretStr("pw"))
    assert load_signer(COSTON2, secrets).address == mine.address
    with pytest.raises(SignerError, match="cannot unlock"):
        load_signer(COSTON2, Secrets(keystore=keystore, keystore_password=SecretStr("no")))
    with pytest.raises(SignerError, match="OKAI_KEYSTORE_PASSWORD is not"):
        load_signer(COSTON2, Secrets(keystore=keystore))
    dev_store = tmp_path / "dev.json"
    dev_store.write_text(
        json.dumps(Account.encrypt(DEV_PRIVATE_KEY, "pw", kdf="pbkdf2", iterations=1000))
    )
    with pytest.raises(SignerError, match="refusing"):
        load_signer(COSTON2, Secrets(keystore=dev_store, keystore_password=SecretStr("pw")))
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(ConfigError, match=r"garbage\.json: not valid JSON \(line 1, column 2\)"):
        load_signer(COSTON2, Secrets(keystore=garbage, keystore_password=SecretStr("pw")))


def test_a_bad_key_is_never_echoed() -> None:
    secret = "0x" + "ab" * 31  # one byte short
    with pytest.raises(SignerError) as caught:
        load_signer(COSTON2, Secrets(private_key=SecretStr(secret)))
    assert secret[2:] not in str(caught.value) and caught.value.__cause__ is None
    assert caught.value.exit_code == ExitCode.USAGE_ERROR


def test_wrong_chain_id_is_refused_before_anything_is_sent(anvil: str) -> None:
    signer = account(1)
    wrong = Network.model_validate({**COSTON2.model_dump(), "rpc_url": anvil})
    client = RegistryClient(wrong, address=Account.create().address, signer=signer)
    nonce = rpc(anvil, "eth_getTransactionCount", signer.address, "pending")
    with pytest.raises(WrongChainError) as caught:
        client.record_model(
            model_digest=digest("m"),
            image_digest=None,
            dataset_digests=[digest("d")],
            job_digest=digest("j"),
            attestation_digest=digest("a"),
            attestation_blob_id="A" * 42 + "E",
        )
    assert (caught.value.expected, caught.value.actual) == (114, 31337)
    assert "nothing was sent" in str(caught.value)
    assert rpc(anvil, "eth_getTransactionCount", signer.address, "pending") == nonce
    with pytest.raises(WrongChainError):
        client.deploy()
    with pytest.raises(WrongChainError):
        client.is_recorded(digest("m"), DEV_ADDRESS)  # reads are checked too


class _FlakyProxy:
    """A JSON-RPC proxy in front of anvil that fails the first requests in set ways."""

    def __init__(self, upstream: str, failures: list[str]) -> None:
        self.failures = failures
        self.seen = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                proxy.seen += 1
                mode = proxy.failures.pop(0) if proxy.failures else "pass"
                if mode == "429":
                    self._reply(429, b"slow down")
                    return
                if mode == "busy":
                    request_id = json.loads(body)["id"]
                    error = {"code": -32005, "message": "too many requests"}
                    self._reply(
                        200,
                        json.dumps({"jsonrpc": "2.0", "id": request_id, "error": error}).encode(),
                    )
                    return
                if mode == "garbage":
                    self._reply(200, b"<html>not JSON-RPC</html>")
                    return
                if mode.startswith(("result:", "error:")):  # well-formed, made up
                    kind, _, value = mode.partition(":")
                    request_id = json.loads(body)["id"]
                    answer = {"jsonrpc": "2.0", "id": request_id, kind: json.loads(value)}
                    self._reply(200, json.dumps(answer).encode())
                    return
                if mode == "close":
                    self.close_connection = True
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                forwarded = httpx.post(
                    upstream,
                    content=body,
                    headers={"Content-Type": "application/json"},
                    verify=tls_context(),
                )
                self._reply(forwarded.status_code, forwarded.content)

            def _reply(self, status: int, content: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ext/C/rpc?x-apikey=SECRET"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def flaky(anvil: str) -> Iterator[_FlakyProxy]:
    proxy = _FlakyProxy(anvil, [])
    yield proxy
    proxy.close()


def test_transient_failures_are_retried(anvil: str, flaky: _FlakyProxy) -> None:
    registry = deployed(anvil)
    through = client_for(
        flaky.url,
        account(1),
        address=registry.address,
        retry=RetryPolicy(attempts=4, backoff=0.01),
    )
    flaky.failures[:] = ["429", "busy", "close"]
    assert not through.is_recorded(digest("m"), DEV_ADDRESS)
    assert flaky.seen >= 5  # three failures, then chain ID and the call
    flaky.failures[:] = ["busy", "429"]  # during a write, too: estimate, nonce, send
    tx = through.register_image(digest("i"), digest("t"), "B" * 43, digest("mb"))
    assert tx.block is not None and registry.is_registered(digest("i"))


def test_persistent_failure_is_reported_without_the_api_key(anvil: str, flaky: _FlakyProxy) -> None:
    through = client_for(
        flaky.url, address=Account.create().address, retry=RetryPolicy(attempts=3, backoff=0.01)
    )
    flaky.failures[:] = ["429"] * 10
    with pytest.raises(RpcUnavailable) as caught:
        through.is_recorded(digest("m"), DEV_ADDRESS)
    assert "SECRET" not in str(caught.value) and "failed eth_chainId 3 times" in str(caught.value)
    assert caught.value.exit_code == ExitCode.OPERATIONAL_FAILURE


def test_answers_that_are_not_the_registry_are_chain_errors(anvil: str, flaky: _FlakyProxy) -> None:
    """What a broken or hostile endpoint answers to the reads of `okai verify`."""
    registry = deployed(anvil)
    reader = RegistryReader(
        dev_network(flaky.url), address=registry.address, retry=RetryPolicy(attempts=2, backoff=0)
    )
    flaky.failures[:] = ["garbage"]
    with pytest.raises(ChainError, match="answered eth_chainId with no JSON-RPC response") as bad:
        reader.check_chain()
    flaky.failures[:] = ['result:"0xnot-hex"']
    with pytest.raises(ChainError, match=r"reading the chain ID: .* answered '0xnot-hex'"):
        reader.check_chain()
    reader.check_chain()
    for made_up in ('"0x1234"', '"0x"', "null", "[1]"):
        flaky.failures[:] = [f"result:{made_up}"]
        with pytest.raises(ChainError, match="reading a model: no registry contract answers"):
            reader.is_recorded(digest("m"), DEV_ADDRESS)
    reverted = {"code": 3, "message": "execution reverted", "data": "0xdeadbeef"}
    flaky.failures[:] = [f"error:{json.dumps(reverted)}"]
    with pytest.raises(ChainError, match="reading a model: the registry reverted: execution"):
        reader.get_model(digest("m"), DEV_ADDRESS)
    flaky.failures[:] = ['error:{"code": -32000, "message": "header not found"}']
    with pytest.raises(ChainError, match="reading a model: the node said: header not found"):
        reader.get_model(digest("m"), DEV_ADDRESS)
    assert not reader.is_recorded(digest("m"), DEV_ADDRESS)
    assert "SECRET" not in str(bad.value)
    assert bad.value.exit_code == ExitCode.OPERATIONAL_FAILURE


def test_dead_endpoint_is_an_operational_error() -> None:
    dead = client_for(
        f"http://127.0.0.1:{free_port()}",
        address=Account.create().address,
        retry=RetryPolicy(attempts=2, backoff=0),
    )
    with pytest.raises(RpcUnavailable, match="failed eth_chainId 2 times"):
        dead.get_model(digest("m"), DEV_ADDRESS)


def test_a_send_retried_after_it_reached_the_node_is_not_an_error(
    anvil: str, flaky: _FlakyProxy
) -> None:
    registry = deployed(anvil)
    through = client_for(
        flaky.url, account(2), address=registry.address, retry=RetryPolicy(attempts=3, backoff=0.01)
    )
    through.check_chain()
    # estimate, nonce, fee fields pass; then the node gets the transaction but the answer is lost
    # and the retry is refused as "already known" or "nonce too low".
    original = through.w3.eth.send_raw_transaction

    def send_twice(raw: bytes) -> object:
        original(raw)
        return original(raw)

    through.w3.eth.send_raw_transaction = send_twice  # type: ignore[method-assign]
    tx = through.register_image(digest("twice"), digest("t"), "C" * 43, digest("mb"))
    assert tx.block is not None and registry.is_registered(digest("twice"))


def test_a_refused_send_names_the_problem_and_frees_its_nonce(anvil: str) -> None:
    registry = deployed(anvil)
    poor = Account.create()
    client = client_for(anvil, poor, address=registry.address)
    with pytest.raises(ChainError, match=r"(?i)insufficient funds") as caught:
        client.register_image(digest("poor"), digest("t"), "D" * 43, digest("mb"))
    assert caught.value.hint is not None and "faucet" in caught.value.hint
    rpc(anvil, "anvil_setBalance", poor.address, hex(10**20))
    tx = client.register_image(digest("poor"), digest("t"), "D" * 43, digest("mb"))
    assert tx.nonce == 0 and tx.block is not None
