"""The verification page in Debian's Chromium against a real local stack.

One stack (anvil + registry + local Walrus server) and one browser for the module; each
test opens a fresh page. Screenshots land in test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from chain_support import account, spam_witnesses
from okai.chain.client import RegistryClient
from okai.chain.dev import dev_network
from okai.chain.signer import DEV_ADDRESS
from okai.digest import Digest, canonical_json
from web_stack import (
    ARTIFACTS,
    TRUST_DEV,
    WebStack,
    World,
    chromium,
    record_scenarios,
    web_stack,
)

pytestmark = pytest.mark.slow
TIMEOUT_MS = 30_000
OTHER_TOPLEVEL = "/nix/store/0a9s8d7f6g5h4j3k2l1qwertyuiopzxc-nixos-system-other-24.11"


@pytest.fixture(scope="module")
def web() -> Iterator[WebStack]:
    with web_stack() as stack:
        record_scenarios(stack)
        yield stack


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as context:
        yield context


class Page:
    """One page, its console problems recorded, with helpers to read the checks."""

    def __init__(self, context: Any) -> None:
        self.page = context.new_page()
        self.problems: list[str] = []
        self.expected: list[str] = []  # substrings of problems a test provokes on purpose
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        self.page.on(
            "console",
            lambda message: (
                self.problems.append(f"console: {message.text}")
                if message.type == "error"
                else None
            ),
        )

    def open(self, url: str) -> None:
        self.page.goto(url)
        self.page.wait_for_selector("body[data-ready='true']", timeout=TIMEOUT_MS)

    def status(self, check: str) -> str:
        return str(self.page.get_attribute(f"li[data-check='{check}']", "class")).split()[-1]

    def reason(self, check: str) -> str:
        return str(self.page.inner_text(f"li[data-check='{check}'] .reason"))

    def wait_status(self, check: str, status: str) -> None:
        self.page.wait_for_selector(f"li[data-check='{check}'].{status}", timeout=TIMEOUT_MS)

    def wait_verdict(self) -> str:
        self.page.wait_for_selector(
            "#verdict[data-verdict='verified'], #verdict[data-verdict='not-verified'], "
            "#verdict[data-verdict='unpinned']",
            timeout=TIMEOUT_MS,
        )
        return str(self.page.get_attribute("#verdict", "data-verdict"))

    def verify_data(self) -> str:
        self.page.click("#verify-data")
        self.page.wait_for_selector(
            "li[data-check='datasets.shards'].passed, li[data-check='datasets.shards'].failed, "
            "li[data-check='datasets.manifests'].failed",
            timeout=TIMEOUT_MS,
        )
        return self.wait_verdict()

    def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.page.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    opened = Page(browser)
    yield opened
    opened.close()
    unexpected = [p for p in opened.problems if not any(e in p for e in opened.expected)]
    assert unexpected == [], "the page logged errors (CSP violations show up here)"


def test_a_recorded_model_verifies_and_its_data_checks_out(web: WebStack, page: Page) -> None:
    page.open(web.trusted_page_url)
    page.page.set_input_files("#file", str(web.models["good"].path))
    assert page.wait_verdict() == "verified"
    for check in ("model.digest", "record.exists", "attestation.digest", "attestation.statement"):
        assert page.status(check) == "passed"
    assert page.status("attestation.matches-record") == "passed"
    assert page.status("image.registered") == "passed"
    assert page.status("datasets.shards") == "not-checked"
    assert page.verify_data() == "verified"
    assert page.status("datasets.manifests") == "passed"
    assert "all 4 shards" in page.reason("datasets.shards")
    # The address bar now holds a deep link to the record.
    assert f"#/model/{web.models['good'].digest}?network=dev&trainer=" in page.page.url
    lineage = page.page.inner_text("#lineage")
    assert "digits-mlp" in lineage and web.models["good"].digest in lineage
    assert "0123456789abcdef0123456789abcdef01234567" in lineage  # nixpkgs revision
    assert "3.11.14" in lineage and "einops 0.8.2" in lineage  # the image's Python
    assert page.page.locator("#lineage svg.diagram g.node").count() == 5
    page.screenshot("verify-page")


def test_a_tampered_file_has_no_record(web: WebStack, page: Page, tmp_path: Any) -> None:
    tampered = tmp_path / "model.safetensors"
    data = bytearray(web.models["good"].path.read_bytes())
    data[10] ^= 1
    tampered.write_bytes(bytes(data))
    page.open(web.trusted_page_url)
    # Dropped, as a user would: a drop event carrying the file.
    transfer = page.page.evaluate_handle(
        "bytes => { const t = new DataTransfer();"
        " t.items.add(new File([new Uint8Array(bytes)], 'model.safetensors')); return t; }",
        list(tampered.read_bytes()),
    )
    page.page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
    assert page.wait_verdict() == "not-verified"
    assert page.status("model.digest") == "passed"
    assert page.status("record.exists") == "failed"
    assert "no record" in page.reason("record.exists")
    assert page.status("attestation.digest") == "not-checked"
    assert page.page.is_disabled("#verify-data")
    page.screenshot("tampered-file")


def test_a_tampered_attestation_fails_its_digest_check(web: WebStack, page: Page) -> None:
    page.open(web.model_url(web.models["tampered-attestation"].digest))
    assert page.wait_verdict() == "not-verified"
    assert page.status("record.exists") == "passed"
    assert page.status("attestation.digest") == "failed"
    assert "hashes to" in page.reason("attestation.digest")
    assert page.status("attestation.statement") == "not-checked"
    page.screenshot("tampered-attestation")


def test_a_tampered_shard_fails_the_data_check(web: WebStack, page: Page) -> None:
    page.open(web.model_url(web.models["tampered-shard"].digest))
    assert page.wait_verdict() == "verified"  # without the data checks, nothing is wrong yet
    assert page.verify_data() == "not-verified"
    assert page.status("datasets.manifests") == "passed"
    assert page.status("datasets.shards") == "failed"
    assert "dataset 1, shard 1" in page.reason("datasets.shards")
    page.screenshot("tampered-shard")


def test_hostile_strings_render_inertly(web: WebStack, page: Page) -> None:
    page.open(web.model_url(web.models["hostile"].digest))
    assert page.wait_verdict() == "verified"
    assert page.verify_data() == "verified"
    p = page.page
    assert p.evaluate("() => window.__pwned") is None  # no script, no onerror handler ran
    assert p.locator("script:not([src])").count() == 0
    page.expected.append("TrustedHTML")
    html_sink = "() => { try { document.body.innerHTML += '<b>x</b>'; return 'ran' } catch (e) { return e.name } }"
    assert p.evaluate(html_sink) == "TypeError"  # Trusted Types: no HTML string sink works
    assert p.locator("img").count() == 0  # the markup in records stayed text
    hrefs = p.eval_on_selector_all("a", "links => links.map(a => a.href)")
    assert all(h.startswith(("https://", "http://")) for h in hrefs), hrefs
    text = p.inner_text("#lineage")
    assert "<b>digits</b>" in text and '<img src=x onerror="window.__pwned=1">' in text
    assert "javascript:window.__pwned=1" in text
    assert "\u202e" not in text and "U+202E" in text  # the override is shown, not obeyed
    assert p.locator(".marker").count() >= 3
    page.screenshot("hostile-strings")
    # 100 kB are cut short with an expand button; expanding keeps the page usable.
    assert len(text) < 20_000
    expand = p.locator("button.expand").first
    expand.click()
    assert expand.get_attribute("aria-expanded") == "true"
    full = p.input_value("#lineage textarea.full")
    assert len(full) > 100_000 and full.startswith('"<script>window.__pwned=1</script>AAA')
    p.fill("#digest", web.models["good"].digest)
    p.click("#digest-form button")
    p.wait_for_function(f"() => location.hash.includes('{web.models['good'].digest[7:]}')")
    assert page.wait_verdict() == "verified"


def test_deep_links_open_a_record_and_survive_garbage(web: WebStack, page: Page) -> None:
    page.open(web.model_url(web.models["good"].digest.upper().replace("SHA256:", "sha256:")))
    assert page.wait_verdict() == "verified"
    assert page.status("model.digest") == "passed"
    page.page.evaluate("() => { location.hash = '#/model/%3Cscript%3E?network=dev'; }")
    page.wait_status("model.digest", "failed")
    assert "not a SHA-256 digest" in page.reason("model.digest")
    assert page.page.evaluate("() => window.__pwned") is None


def test_the_page_fits_a_phone(web: WebStack, browser: Any) -> None:
    phone = browser.new_page()
    try:
        phone.set_viewport_size({"width": 375, "height": 800})
        phone.goto(web.model_url(web.models["good"].digest))
        phone.wait_for_selector("#verdict[data-verdict='verified']", timeout=TIMEOUT_MS)
        width = phone.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 375, f"the page is {width}px wide on a 375px screen"
        ARTIFACTS.mkdir(exist_ok=True)
        phone.screenshot(path=str(ARTIFACTS / "phone.png"), full_page=True)
    finally:
        phone.close()


def test_without_a_policy_the_page_never_says_verified(web: WebStack, page: Page) -> None:
    page.open(web.model_url(web.models["good"].digest, "network=dev"))
    assert page.wait_verdict() == "unpinned"
    verdict = page.page.inner_text("#verdict")
    assert "Verified" not in verdict and "no trusted account was pinned" in verdict
    assert "Trusted: nobody" in verdict
    assert "an account nobody pinned" in page.reason("record.exists")


def test_a_link_that_changes_the_registry_is_flagged(web: WebStack, page: Page) -> None:
    digest = web.models["good"].digest
    page.open(web.model_url(digest, f"network=dev&{TRUST_DEV}&registry={web.registry}"))
    assert page.wait_verdict() == "verified"
    verdict = page.page.inner_text("#verdict")
    assert "on dev" not in verdict and "not dev's own" in verdict
    assert "Warning: this link changes the registry address of dev" in verdict
    assert f"Trusted: trainers {DEV_ADDRESS}" in verdict


def test_witness_spam_neither_blocks_the_page_nor_costs_it_a_call(
    web: WebStack, browser: Any
) -> None:
    spammed = web.record(
        "spammed",
        World(
            store=web.store,
            store_quilt=web.store_quilt,
            model=b"model that twenty thousand accounts witnessed\n" * 4,
        ),
    )

    def load() -> tuple[list[list[tuple[str, str]]], str]:
        """The page's JSON-RPC requests (method and params of each call) and its witnesses line."""
        requests: list[list[tuple[str, str]]] = []

        def count(request: Any) -> None:
            if request.method != "POST":
                return  # the page reads blobs with GET; only JSON-RPC is POSTed
            body = request.post_data_json
            calls = body if isinstance(body, list) else [body]
            requests.append([(c["method"], json.dumps(c.get("params"))) for c in calls])

        opened = Page(browser)
        opened.page.on("request", count)
        try:
            opened.open(web.model_url(spammed.digest))
            assert opened.wait_verdict() == "verified", opened.page.inner_text("#checks")
            reason = opened.reason("witnesses")
        finally:
            opened.close()
        assert opened.problems == []
        return requests, reason

    quiet, none = load()
    assert "none" in none and len(quiet) >= 4  # chain ID, code, claimants, provenance

    spam_witnesses(web.rpc_url, web.registry, Digest(spammed.digest), DEV_ADDRESS, 20_000)
    listed, total = web.client().get_witnesses(Digest(spammed.digest), DEV_ADDRESS, 19_990, 100)
    assert total == 20_000 and len(set(listed)) == 10

    spammed_requests, counted = load()
    assert spammed_requests == quiet  # the same requests, call for call, whatever the spam
    assert "20000 accounts recorded a reproduction, none of them trusted" in counted


def test_of_two_trusted_image_claims_the_page_judges_the_one_whose_system_ran(
    web: WebStack, page: Page
) -> None:
    good = web.models["good"]
    # Another publisher claims the same image digest for another system, with a manifest of
    # its own; the link trusts it first, so its claim is the first one read.
    other = account(5)
    manifest = copy.deepcopy(good.world.image_manifest)
    manifest["nixos"]["systemToplevel"] = OTHER_TOPLEVEL
    RegistryClient(dev_network(web.rpc_url), address=web.registry, signer=other).register_image(
        Digest(good.world.image_digest),
        Digest.of_bytes(OTHER_TOPLEVEL.encode()),
        web.store(canonical_json(manifest)),
        Digest.of_bytes(canonical_json(manifest)),
    )
    trust = f"network=dev&trainer={DEV_ADDRESS}&publisher={other.address}"

    page.open(web.model_url(good.digest, trust))
    assert page.wait_verdict() == "not-verified"
    assert page.status("image.registered") == "failed"
    assert "the registered image's is" in page.reason("image.registered")

    page.page.goto("about:blank")  # a fresh load, not a hash change on the judged page
    page.open(web.model_url(good.digest, f"{trust}&publisher={DEV_ADDRESS}"))
    assert page.wait_verdict() == "verified"
    assert page.status("image.registered") == "passed"
