"""The pre-flight of a rented cluster: what must hold before the first resource is paid for.

`okai cluster up --provider fluence` (and its `--dry-run`) runs, before any write:

1. the job check of `okai train` (`okai.train.job.load_checked_job`, the one function
   both commands call), done where the job file is read;
2. `check_reachable`: the nodes fetch their data from, and store their outputs on, the
   network's Walrus endpoints, and Fluence downloads the image: on a rented VM a loopback,
   private or link-local address (or a name resolving only to such addresses) is not this
   machine's. Those are refused unless the user says the nodes can reach them;
3. `check_image`: the image URL is asked for its first byte; a definite refusal (4xx) is
   refused here, an answer that does not come (no route from this machine, 5xx) is a warning;
4. `check_data`: every dataset manifest, raw blob and entry point of the job is read from
   the aggregators the nodes will use and checked against its SHA-256; every shard a
   manifest lists is checked present, and hashed too while the shards add up to at most
   `HASH_SHARDS_UP_TO` bytes (beyond that a full check would download the dataset here).

The Fluence side (scopes, offers, balance, cost limit, image URL form) is
`FluenceProvider.plan`. Every failure here is a `PreflightError` (exit 2): nothing was created.
"""

from __future__ import annotations

import ipaddress
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from okai.compute.fluence.client import redact_url
from okai.compute.fluence.spec import validate_image_url
from okai.compute.node.files import WalrusEndpoints
from okai.digest import Digest
from okai.errors import OkaiError, UsageError
from okai.manifest import BlobRef, EntrypointModel, JobSpec, ManifestRef
from okai.tls import tls_context

HASH_SHARDS_UP_TO = 256 << 20
"""Shards are hashed in full while a job's shards add up to at most this many bytes."""
REACH_OPTION = "--nodes-reach-endpoints"


class PreflightError(UsageError):
    """A rented cluster could not train this job; nothing was created."""


# --- endpoints ------------------------------------------------------------------------------


def not_public(url: str) -> str | None:
    """Why a rented VM could not reach `url`'s host, or None if it looks public.

    A name that does not resolve here passes: reading the data from it fails
    the pre-flight anyway, and a resolver elsewhere may know it.
    """
    host = urlsplit(url).hostname
    if not host:
        return "has no host"
    if host == "localhost" or host.endswith(".localhost"):
        return "is loopback (on a node, the node itself)"
    try:
        addresses = {ipaddress.ip_address(host)}
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except OSError:
            return None
        addresses = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
    if any(address.is_global for address in addresses):
        return None
    first = sorted(str(a) for a in addresses)[0]
    if all(address.is_loopback for address in addresses):
        return f"is loopback ({first}: on a node, the node itself)"
    return f"is not a public address ({first})"


def check_reachable(
    walrus: WalrusEndpoints | None, image_url: str | None, *, publish: bool, nodes_reach: bool
) -> None:
    """Refuse endpoints a rented VM cannot reach (see the module docstring)."""
    if walrus is None or not walrus.aggregators:
        raise PreflightError(
            "the nodes need a Walrus aggregator to read the job's data, and none is configured",
            hint="choose a network with `--network`, or set OKAI_WALRUS_AGGREGATORS",
        )
    problems: list[str] = []
    if image_url is not None and (why := not_public(image_url)):
        # Fluence downloads the image, whatever the nodes can reach.
        problems.append(f"the image URL {redact_url(image_url)} {why}")
    if not nodes_reach:
        named = [("aggregator", url) for url in walrus.aggregators]
        if publish and walrus.publisher:
            named.append(("publisher", walrus.publisher))
        problems += [f"{role} {url} {why}" for role, url in named if (why := not_public(url))]
    if problems:
        raise PreflightError(
            f"nodes on Fluence cannot reach what network {walrus.network!r} names: "
            + "; ".join(problems)
            + "; nothing was created",
            hint="choose a network with public Walrus endpoints (`--network testnet`), or set "
            "OKAI_WALRUS_AGGREGATORS and OKAI_WALRUS_PUBLISHER to public ones; if the nodes "
            f"can reach these (a tunnel, a VPN), say so with {REACH_OPTION}",
        )


def check_image(url: str, timeout_s: float = 15.0) -> str | None:
    """Refuse an image URL whose server refuses it; a warning if it cannot be asked from here."""
    import httpx

    validate_image_url(url)
    shown = redact_url(url)
    try:
        with (
            httpx.Client(timeout=timeout_s, follow_redirects=True, verify=tls_context()) as client,
            client.stream("GET", url, headers={"Range": "bytes=0-0"}) as response,
        ):
            status = response.status_code  # the body is never read: it may be gigabytes
    except httpx.HTTPError as exc:
        return f"could not check the image URL {shown} from here ({type(exc).__name__})"
    if status < 400:
        return None
    if status >= 500:
        return f"the image URL {shown} answered {status}; Fluence may fail to download it"
    raise PreflightError(
        f"the image URL {shown} answers {status}: Fluence could not download it; "
        "nothing was created",
        hint="Fluence needs a public URL without credentials: `okai image publish` prints one",
    )


# --- data -----------------------------------------------------------------------------------


def check_data(
    job: JobSpec, walrus: WalrusEndpoints, report: Callable[[str], None] = lambda m: None
) -> str:
    """Read what the job pins from the nodes' aggregators and check it; a one-line summary."""
    from okai.walrus.client import WalrusClient
    from okai.walrus.dataset import fetch_manifest

    where = ", ".join(walrus.aggregators)
    checked: list[str] = []
    with (
        WalrusClient(walrus.aggregators, None, compute_blob_ids_up_to=0) as client,
        tempfile.TemporaryDirectory(prefix="okai-preflight-") as scratch,
    ):
        spare = Path(scratch) / "blob"

        def hashed(blob_id: str, sha256: str, size: int | None, what: str) -> None:
            with _failing(what, where):
                client.read_to_file(blob_id, Digest(sha256), spare, expected_size=size)
            spare.unlink(missing_ok=True)

        for index, ref in enumerate(job.datasets):
            if isinstance(ref, ManifestRef):
                what = f"dataset {index} (manifest {ref.manifest_blob_id})"
                report(f"pre-flight: reading {what}")
                with _failing(what, where):
                    manifest = fetch_manifest(client, ref)
                full = sum(shard.size for shard in manifest.shards) <= HASH_SHARDS_UP_TO
                for shard in manifest.shards:
                    label = f"shard {shard.blob_id} of {what}"
                    if full:
                        hashed(shard.blob_id, shard.sha256, shard.size, label)
                    elif shard.size:
                        with _failing(label, where):
                            client.read_range(shard.blob_id, 0, 1)
                verb = "hashed" if full else "present"
                checked.append(f"{manifest.name}: {len(manifest.shards)} shard(s) {verb}")
            elif isinstance(ref, BlobRef):
                assert ref.sha256 is not None  # the job check requires it
                what = f"dataset {index} (blob {ref.blob_id})"
                report(f"pre-flight: reading {what}")
                hashed(ref.blob_id, ref.sha256, None, what)
                checked.append(f"blob {ref.blob_id} hashed")
        if isinstance(job.model, EntrypointModel):
            model = job.model
            what = f"the entry point (blob {model.entrypoint_blob_id})"
            report(f"pre-flight: reading {what}")
            hashed(model.entrypoint_blob_id, model.sha256, None, what)
            checked.append("entry point hashed")
    return f"data checked on {where}: " + "; ".join(checked)


@contextmanager
def _failing(what: str, where: str) -> Iterator[None]:
    """Turn a failed read or check into a `PreflightError` naming what and where."""
    try:
        yield
    except OkaiError as exc:
        raise PreflightError(
            f"pre-flight: {what} cannot be used from {where}: {exc.message}; nothing was created",
            hint="the nodes read the data from these aggregators: push the data there "
            "(`okai data push`), or fix the job's blob IDs and digests",
        ) from exc
