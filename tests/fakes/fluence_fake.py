"""An in-process fake of the Fluence CPU Cloud API (spec 0.10.0), for tests only.

A real HTTP server on 127.0.0.1 (threaded, free port) that:

- validates every request (query parameters and JSON body) and every response it
  sends against the schemas of `specs/fluence-openapi.json`, resolving `$ref`s in
  the spec; each mismatch is appended to `violations`, which the test fixture
  asserts empty, and an invalid request is answered `400 bad_request` as the
  server would;
- checks auth as the spec declares it (`X-API-KEY`, `Authorization: X-API-KEY`,
  Bearer) and scopes per key;
- follows the documented lifecycles on a clock with configurable delays
  (VM `new -> launching -> launched`, `terminating -> terminated`; storages,
  public IPs and security groups `new -> created -> ready`, `removing -> removed`);
- keeps billing: every VM until `terminated`, every disk and public IP until
  `removed` (`billable()`, `accrued_usd()`);
- can be told to fail: `inject(Fault(...))` (any status/code, before or after
  committing, or dropping the connection), `fail_vm(name)`, `balance`,
  `unknown_key_status`, `restart_required_on_bind`, page base and size;
- calls `on_received` hooks with each request as it arrives (before it is
  answered) and `on_answered` hooks once its answer is sent, so a test can act
  (signal a client process) while a call is in flight or right after the Nth create.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_FILE = Path(__file__).parent / "specs" / "fluence-openapi.json"
SPEC_URI = "urn:fluence-openapi"
USER_DATA_LIMIT = 16384
IMAGE_SUFFIXES = (".qcow2", ".img", ".raw", ".raw.xz", ".raw.gz", ".img.xz", ".img.gz")
NAME_RE = re.compile(r"^[a-z0-9-]{1,25}$")
ALL_VM_ACTIONS = ["addPublicIp", "removePublicIp", "addStorages", "removeStorages",
                  "updateNetworkInterface", "restart", "softReboot", "terminate"]  # fmt: skip
ALL_SCOPES = frozenset(
    {"clusters:read", "prices:read", "vm:list", "vms:read", "vms:write", "storage:read",
     "storage:write", "public_ip:read", "public_ip:write", "vpc:read", "vpc:write",
     "subnet:read", "subnet:write", "security_group:read", "security_group:write",
     "ssh_key:list", "ssh_key:create", "ssh_key:remove", ""}
)  # fmt: skip
KEY_TYPES = {"ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
             "ecdsa-sha2-nistp521"}  # fmt: skip


CATALOGUES = {("GET", "/v1/clusters"), ("GET", "/v1/datacenters"),
              ("GET", "/v1/configurations/virtual_machines"), ("GET", "/v1/storages/default_images")}  # fmt: skip
"""Answers the official provider decodes as bare arrays (and clusters with `dc_id`)."""


def _now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _id() -> str:
    return str(uuid.uuid4())


# --- the spec ------------------------------------------------------------------------------


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


_formats = jsonschema.FormatChecker()


@_formats.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    datetime.fromisoformat(value.replace("Z", "+00:00"))
    return "T" in value


@dataclass
class Operation:
    method: str
    template: str
    regex: re.Pattern[str]
    spec: dict[str, Any]

    @property
    def params(self) -> dict[str, dict[str, Any]]:
        return {p["name"]: p for p in self.spec.get("parameters", []) if p["in"] == "query"}

    @property
    def scopes(self) -> list[str] | None:
        """Scopes the API key needs; `None` when the operation needs no auth."""
        security = self.spec.get("security")
        if security == []:
            return None
        alternatives = security or [{"api_key": []}]
        for alt in alternatives:
            if "api_key" in alt:
                return list(alt["api_key"])
        return list(next(iter(alternatives[0].values())))


class Spec:
    """The OpenAPI document, its operations, and validators bound to its schemas."""

    def __init__(self, path: Path = SPEC_FILE) -> None:
        self.doc: dict[str, Any] = json.loads(path.read_text())
        resource = Resource.from_contents(self.doc, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
        self.operations: list[Operation] = []
        for template, item in self.doc["paths"].items():
            pattern = re.sub(r"\\\{[^}]+\\\}", "([^/]+)", re.escape(template))
            for method, op in item.items():
                if method in ("get", "post", "patch", "put", "delete"):
                    self.operations.append(
                        Operation(method.upper(), template, re.compile(f"^{pattern}$"), op)
                    )
        # Literal paths before templated ones (`/v1/storages/types` vs `/v1/storages/{id}`).
        self.operations.sort(key=lambda o: o.template.count("{"))
        self._validators: dict[str, jsonschema.Validator] = {}

    def find(self, method: str, path: str) -> tuple[Operation, tuple[str, ...]] | None:
        for op in self.operations:
            if op.method == method:
                match = op.regex.match(path)
                if match:
                    return op, match.groups()
        return None

    def errors(self, pointer: str, instance: Any) -> list[str]:
        validator = self._validators.get(pointer)
        if validator is None:
            validator = jsonschema.Draft202012Validator(
                {"$ref": SPEC_URI + pointer}, registry=self.registry, format_checker=_formats
            )
            self._validators[pointer] = validator
        return [
            f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:300]}"
            for e in validator.iter_errors(instance)
        ]

    def request_pointer(self, op: Operation) -> str | None:
        if "application/json" not in op.spec.get("requestBody", {}).get("content", {}):
            return None
        path = op.template
        return _pointer("paths", path, op.method.lower(), "requestBody", "content",
                        "application/json", "schema")  # fmt: skip

    def response_pointer(self, op: Operation, status: int) -> str | None:
        responses = op.spec.get("responses", {})
        if str(status) in responses:
            content = responses[str(status)].get("content", {})
            if "application/json" not in content:
                return None
            return _pointer("paths", op.template, op.method.lower(), "responses", str(status),
                            "content", "application/json", "schema")  # fmt: skip
        if status >= 400:  # undeclared error statuses still carry an ErrorBody
            return _pointer("components", "responses", "ErrorBody", "content",
                            "application/json", "schema")  # fmt: skip
        return "undeclared"


_SPEC: Spec | None = None
_SPEC_LOCK = threading.Lock()


def spec() -> Spec:
    global _SPEC
    with _SPEC_LOCK:
        if _SPEC is None:
            _SPEC = Spec()
        return _SPEC


# --- behaviour switches --------------------------------------------------------------------


@dataclass
class Timing:
    """Seconds each asynchronous step takes."""

    vm_new: float = 0.05
    vm_launching: float = 0.05
    vm_terminating: float = 0.05
    vm_restarting: float = 0.05
    resource_new: float = 0.02
    resource_created: float = 0.02
    resource_removing: float = 0.02
    group_updating: float = 0.02


@dataclass
class Fault:
    """Answer matching requests with an error instead of (or after) doing them."""

    method: str
    path: str
    """Regular expression matched against the whole path."""
    status: int = 500
    code: str | None = "internal_server_error"
    message: str = "Unexpected server error"
    times: int = 1
    skip: int = 0
    """Let this many matching requests through first."""
    after_commit: bool = False
    """Do the work, then answer with the error (the change happened)."""
    drop: bool = False
    """Do the work, then close the connection without any answer."""
    raw_body: Any = None
    """Send this body instead of an ErrorBody (off-spec on purpose: not validated)."""


@dataclass
class Logged:
    method: str
    path: str
    query: list[tuple[str, str]]
    body: Any
    headers: dict[str, str]
    status: int = 0


@dataclass
class Entity:
    kind: str
    data: dict[str, Any]
    schedule: list[tuple[float, str]] = field(default_factory=list)
    billed_since: float | None = None
    billed_until: float | None = None
    hourly: Decimal = Decimal(0)


class HttpError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# --- the fake ------------------------------------------------------------------------------


class FluenceFake:
    """The fake API; use as a context manager (`with FluenceFake() as fake: fake.url`)."""

    def __init__(self, api_key: str = "test-key-0123456789abcdef", timing: Timing | None = None):
        self.api_key = api_key
        self.keys: dict[str, set[str]] = {api_key: set(ALL_SCOPES)}
        self.timing = timing or Timing()
        self.balance = Decimal("1000")
        self.unknown_key_status = 401
        self.restart_required_on_bind = True
        self.first_page = 1
        self.max_per_page = 100
        self.bare_catalogues = False
        self.snake_dc_id = False
        self.version = "0.10.0"
        self.maintenance = False
        self.user_id = _id()
        self.faults: list[Fault] = []
        self.failing_vms: set[str] = set()
        self.violations: list[str] = []
        self.log: list[Logged] = []
        self.on_received: list[Callable[[Logged], None]] = []
        """Called (in the server's thread) with each request before it is answered."""
        self.on_answered: list[Callable[[Logged], None]] = []
        """Called (in the server's thread) with each request once its answer is sent."""
        self.lock = threading.RLock()
        self.entities: dict[str, Entity] = {}
        self.user_data: dict[str, str] = {}
        self._catalogue()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- catalogue: two clusters, with prices -------------------------------------------------

    def _catalogue(self) -> None:
        self.datacenters = [
            {"id": _id(), "countryCode": "DE", "cityCode": "FRA", "cityName": "Frankfurt",
             "index": 1, "tier": 3, "certifications": ["ISO 27001"], "slug": "de-fra-1"},
            {"id": _id(), "countryCode": "US", "cityCode": "NYC", "cityName": "New York",
             "index": 2, "tier": 3, "certifications": [], "slug": "us-nyc-1"},
        ]  # fmt: skip
        self.clusters = [
            {"id": _id(), "name": "fra-1", "dcId": self.datacenters[0]["id"]},
            {"id": _id(), "name": "nyc-1", "dcId": self.datacenters[1]["id"]},
        ]
        self.default_subnets = {c["id"]: _id() for c in self.clusters}
        self.default_vpcs = {c["id"]: _id() for c in self.clusters}

        def cfg(slug: str, vcpu: int, ram: int, family: str) -> dict[str, Any]:
            return {"id": _id(), "slug": slug, "name": slug.replace("-", " "), "vcpu": vcpu,
                    "ramGb": ram, "dedicated": not slug.startswith("cpu-shared"),
                    "cpuFamilies": [family], "preset": "general", "tags": [],
                    "description": ""}  # fmt: skip

        self.configurations = [
            cfg("cpu-regular-2vcpu-4gb", 2, 4, "AMD_ZEN3"),
            cfg("cpu-regular-4vcpu-8gb", 4, 8, "AMD_ZEN3"),
            cfg("cpu-premium-8vcpu-16gb", 8, 16, "AMD_ZEN5"),
            cfg("cpu-shared-2vcpu-2gb", 2, 2, "AMD_ZEN2"),  # in the raw catalogue only: unpriced
        ]
        fra, nyc = (c["id"] for c in self.clusters)
        c2, c4, c8, _shared = (c["id"] for c in self.configurations)
        self.vm_prices: dict[tuple[str, str], Decimal] = {
            (fra, c2): Decimal("0.03"), (fra, c4): Decimal("0.06"), (fra, c8): Decimal("0.14"),
            (nyc, c2): Decimal("0.04"), (nyc, c4): Decimal("0.08"),
        }  # fmt: skip
        self.disk_prices = {
            (fra, False): Decimal("0.0001"), (fra, True): Decimal("0.0002"),
            (nyc, False): Decimal("0.00012"),
        }  # fmt: skip
        self.ip_prices = {fra: Decimal("0.004"), nyc: Decimal("0.005")}
        self.ip_capacity = {fra: 10, nyc: 4}
        self.storage_capacity = {fra: 4000, nyc: 1000}
        self.min_volume_gb = 25

    # --- lifetime ------------------------------------------------------------------------------

    def __enter__(self) -> FluenceFake:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        spec()
        fake = self

        class Handler(_Handler):
            pass

        Handler.fake = fake
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # --- test controls -------------------------------------------------------------------------

    def inject(self, fault: Fault) -> Fault:
        with self.lock:
            self.faults.append(fault)
        return fault

    def fail_vm(self, name: str) -> None:
        """The VM created with this name ends `failed` instead of `launched`."""
        self.failing_vms.add(name)

    def billable(self) -> list[tuple[str, str, str]]:
        """(kind, name, id) of everything that is being billed right now."""
        with self.lock:
            self._tick()
            return [
                (e.kind, e.data["name"], e.data["id"])
                for e in self.entities.values()
                if e.billed_since is not None and e.billed_until is None
            ]

    def accrued_usd(self) -> Decimal:
        with self.lock:
            self._tick()
            now = time.monotonic()
            total = Decimal(0)
            for e in self.entities.values():
                if e.billed_since is not None:
                    end = e.billed_until if e.billed_until is not None else now
                    total += e.hourly * Decimal(str(end - e.billed_since)) / 3600
            return total

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            self._tick()
            return [dict(e.data) for e in self.entities.values() if e.kind == kind]

    def mutations(self) -> list[Logged]:
        """Every write request received (creates, updates, deletes, actions)."""
        return [e for e in self.log if e.method != "GET" and e.path != "/v1/prices/cost"]

    # --- the clock -----------------------------------------------------------------------------

    def _schedule(self, entity: Entity, *steps: tuple[float, str]) -> None:
        at = time.monotonic()
        entity.schedule = []
        for delay, status in steps:
            at += delay
            entity.schedule.append((at, status))

    def _tick(self) -> None:
        now = time.monotonic()
        for entity in list(self.entities.values()):
            while entity.schedule and entity.schedule[0][0] <= now:
                at, status = entity.schedule.pop(0)
                self._enter(entity, status, at)

    def _enter(self, e: Entity, status: str, now: float) -> None:
        d = e.data
        d["status"] = status
        d["updatedAt"] = _now_iso()
        if e.kind == "vm":
            if status in ("launching", "launched", "failed", "terminating", "terminated"):
                self.user_data.pop(d["id"], None)  # handed off (or dropped): erased, marker stays
            if status == "launched":
                d["readySince"] = d.get("readySince") or _now_iso()
                d["restartRequired"] = False
                d["allowedActions"] = list(ALL_VM_ACTIONS)
            elif status in ("new", "launching", "failed", "suspended"):
                d["allowedActions"] = ["terminate"]
            else:
                d["allowedActions"] = []
            if status == "terminated":
                d["terminatedAt"] = _now_iso()
                e.billed_until = now
                self._detach(d["id"])
        else:
            if status == "ready":
                d["readySince"] = d.get("readySince") or _now_iso()
                if e.kind == "public_ip" and not d.get("address"):
                    d["address"] = (
                        f"203.0.113.{len([x for x in self.entities.values() if x.kind == 'public_ip'])}"
                    )
            if status == "removed":
                d["removedAt"] = _now_iso()
                e.billed_until = now if e.billed_since is not None else None

    def _detach(self, vm_id: str) -> None:
        for e in self.entities.values():
            if e.kind == "storage" and vm_id in e.data["attachedTo"]:
                e.data["attachedTo"] = [v for v in e.data["attachedTo"] if v != vm_id]
            if e.kind == "public_ip" and (e.data.get("attachedTo") or {}).get("id") == vm_id:
                e.data["attachedTo"] = None
            if e.kind == "security_group":
                ifaces = {i["id"] for i in self.entities[vm_id].data["_interfaces"]}
                e.data["attachedTo"] = [i for i in e.data["attachedTo"] if i not in ifaces]

    # --- request handling ----------------------------------------------------------------------

    def handle(self, h: _Handler) -> None:
        parts = urlsplit(h.path)
        path, query = parts.path, parse_qsl(parts.query, keep_blank_values=True)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        entry = Logged(h.command, path, query, None, {k: v for k, v in h.headers.items()})
        with self.lock:
            self.log.append(entry)
        for hook in list(self.on_received):
            hook(entry)
        found = spec().find(h.command, path)
        if found is None:
            self.violations.append(f"{h.command} {path}: no such operation in the spec")
            return self._send(h, entry, None, 404, {"code": "not_found", "error": "no route"})
        op, args = found
        try:
            body = self._check_request(h, op, args, query, raw)
            entry.body = body
            fault = self._fault(h.command, path)
            if fault is not None and not (fault.after_commit or fault.drop):
                return self._send_fault(h, entry, op, fault)
            with self.lock:
                self._tick()
                status, answer = self._route(op, args, query, body)
            if fault is not None and fault.drop:
                entry.status = -1
                h.close_connection = True
                return None
            if fault is not None:
                return self._send_fault(h, entry, op, fault)
        except HttpError as exc:
            status, answer = exc.status, {"code": exc.code, "error": exc.message}
        return self._send(h, entry, op, status, answer)

    def _fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.method == method and re.fullmatch(fault.path, path) and fault.times > 0:
                    if fault.skip > 0:
                        fault.skip -= 1
                        return None
                    fault.times -= 1
                    return fault
        return None

    def _send_fault(self, h: _Handler, entry: Logged, op: Operation, fault: Fault) -> None:
        if fault.raw_body is not None:
            return self._send(h, entry, None, fault.status, fault.raw_body)
        body: dict[str, Any] = {"error": fault.message}
        if fault.code is not None:
            body["code"] = fault.code
        return self._send(h, entry, op, fault.status, body)

    def _send(
        self, h: _Handler, entry: Logged, op: Operation | None, status: int, body: Any
    ) -> None:
        off_spec_on_purpose = (self.bare_catalogues or self.snake_dc_id) and op is not None and (
            op.method, op.template) in CATALOGUES  # fmt: skip
        if op is not None and not off_spec_on_purpose:
            pointer = spec().response_pointer(op, status)
            if pointer == "undeclared":
                self.violations.append(
                    f"{op.method} {op.template}: status {status} not in the spec"
                )
            elif pointer is not None:
                for error in spec().errors(pointer, body):
                    self.violations.append(
                        f"response {status} of {op.method} {op.template}: {error}"
                    )
        entry.status = status
        payload = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)
        h.wfile.flush()
        for hook in list(self.on_answered):
            hook(entry)
        return None

    def _check_request(
        self,
        h: _Handler,
        op: Operation,
        args: tuple[str, ...],
        query: list[tuple[str, str]],
        raw: bytes,
    ) -> Any:
        scopes = op.scopes
        if scopes is not None:
            key = self._key(h)
            if key is None or key not in self.keys:
                status = self.unknown_key_status
                code = "unauthorized" if status == 401 else "forbidden"
                raise HttpError(status, code, "Auth token invalid or missing")
            missing = [s for s in scopes if s not in self.keys[key]]
            if missing:
                raise HttpError(
                    403, "forbidden", f"Not allowed to call this endpoint ({missing[0]})"
                )
        self._check_path(op, args)
        self._check_query(op, query)
        pointer = spec().request_pointer(op)
        if pointer is None:
            if raw:
                self._bad(f"{op.method} {op.template}: a body was sent but the spec takes none")
            return None
        if h.headers.get("Content-Type", "").split(";")[0] != "application/json":
            self._bad(f"{op.method} {op.template}: Content-Type must be application/json")
        try:
            body = json.loads(raw)
        except ValueError:
            self._bad(f"{op.method} {op.template}: the body is not JSON")
        errors = spec().errors(pointer, body)
        if errors:
            self._bad(f"{op.method} {op.template} body: {errors[0]}")
        return body

    def _bad(self, message: str) -> None:
        self.violations.append(message)
        raise HttpError(400, "bad_request", message)

    def _check_path(self, op: Operation, args: tuple[str, ...]) -> None:
        names = re.findall(r"\{([^}]+)\}", op.template)
        params = op.spec.get("parameters", [])
        for name, value in zip(names, args, strict=True):
            index = next(i for i, p in enumerate(params) if p["in"] == "path" and p["name"] == name)
            pointer = _pointer(
                "paths", op.template, op.method.lower(), "parameters", str(index), "schema"
            )
            errors = spec().errors(pointer, value)
            if errors:
                self._bad(f"{op.method} {op.template}: path parameter {name}: {errors[0]}")

    def _check_query(self, op: Operation, query: list[tuple[str, str]]) -> None:
        declared = op.params
        grouped: dict[str, list[str]] = {}
        for key, value in query:
            name = key.split("[", 1)[0]
            if name not in declared:
                self._bad(f"{op.method} {op.template}: unknown query parameter {key!r}")
            grouped.setdefault(name, []).append(value)
        for name, values in grouped.items():
            schema = declared[name]["schema"]
            pointer = _pointer("paths", op.template, op.method.lower(), "parameters",
                               str(op.spec["parameters"].index(declared[name])), "schema")  # fmt: skip
            kind = _resolve(schema).get("type")
            instance: Any = [_coerce(v, _resolve(schema.get("items", {}))) for v in values] if kind == "array" else _coerce(values[-1], _resolve(schema))  # fmt: skip
            errors = spec().errors(pointer, instance)
            if errors:
                self._bad(f"{op.method} {op.template}: query {name}: {errors[0]}")

    def _key(self, h: _Handler) -> str | None:
        if h.headers.get("X-API-KEY"):
            return h.headers["X-API-KEY"]
        auth = h.headers.get("Authorization", "")
        for prefix in ("X-API-KEY ", "Bearer "):
            if auth.startswith(prefix):
                return auth[len(prefix) :]
        return None

    # --- routes --------------------------------------------------------------------------------

    def _route(
        self, op: Operation, args: tuple[str, ...], query: list[tuple[str, str]], body: Any
    ) -> tuple[int, Any]:
        q = _Query(query)
        m, t = op.method, op.template
        table: dict[tuple[str, str], Callable[[], Any]] = {
            ("GET", "/v1/service/status"): lambda: {"maintenanceMode": self.maintenance, "version": self.version},
            ("GET", "/v1/users/me"): self._me,
            ("GET", "/v2/users/balances"): self._balances,
            ("GET", "/v1/clusters"): lambda: self._catalogue_answer([self._cluster_dto(c) for c in self.clusters]),
            ("GET", "/v1/datacenters"): lambda: self._catalogue_answer(self.datacenters),
            ("GET", "/v1/configurations/virtual_machines"): lambda: self._catalogue_answer(self.configurations),
            ("GET", "/v1/clusters/{cluster_id}/resources"): lambda: self._resources(args[0]),
            ("GET", "/v1/clusters/resources"): lambda: {"resources": {c: self._resources(c) for c in q.all("clusterIds") if self._cluster(c)}},
            ("GET", "/v1/prices/vm"): lambda: {"items": self._vm_prices(q.one("clusterId"))},
            ("GET", "/v1/prices/storage"): lambda: {"items": self._disk_prices(q.one("clusterId"))},
            ("GET", "/v1/prices/public-ip"): lambda: {"items": self._ip_prices(q.one("clusterId"))},
            ("POST", "/v1/prices/cost"): lambda: self._cost(body),
            ("GET", "/v1/storages/types"): lambda: {"items": [{"storageType": "NVME", "bootDisk": True, "minVolumeGb": self.min_volume_gb, "maxBandwidthReadMib": 1000, "maxBandwidthWriteMib": 800, "maxIopsRead": 50000, "maxIopsWrite": 40000}]},
            ("GET", "/v1/storages/default_images"): lambda: self._catalogue_answer([]),
            ("GET", "/v1/ssh_keys"): lambda: self._list("ssh_key", q),
            ("POST", "/v1/ssh_keys"): lambda: self._create_ssh_key(body),
            ("DELETE", "/v1/ssh_keys/{ssh_key_id}"): lambda: self._delete_ssh_key(args[0]),
            ("GET", "/v1/public_ips"): lambda: self._list("public_ip", q),
            ("POST", "/v1/public_ips"): lambda: self._create_ip(body)[1].data,
            ("DELETE", "/v1/public_ips/{public_ip_id}"): lambda: self._delete("public_ip", args[0]),
            ("POST", "/v1/public_ips/delete"): lambda: [self._delete("public_ip", i) for i in body["ids"]],
            ("GET", "/v1/storages"): lambda: self._list("storage", q),
            ("POST", "/v1/storages"): lambda: self._create_storage(body, "DATA", None).data,
            ("GET", "/v1/storages/{storage_id}"): lambda: self._get("storage", args[0]).data,
            ("DELETE", "/v1/storages/{storage_id}"): lambda: self._delete("storage", args[0]),
            ("POST", "/v1/storages/delete"): lambda: [self._delete("storage", i) for i in body["ids"]],
            ("GET", "/v1/security_groups"): lambda: self._list("security_group", q),
            ("POST", "/v1/security_groups"): lambda: self._create_group(body),
            ("PATCH", "/v1/security_groups/{security_group_id}"): lambda: self._update_group(args[0], body),
            ("DELETE", "/v1/security_groups/{security_group_id}"): lambda: self._delete("security_group", args[0]),
            ("GET", "/v2/vms"): lambda: self._list("vm", q),
            ("POST", "/v2/vms"): lambda: self._create_vm(body),
            ("GET", "/v2/vms/{vm_id}"): lambda: self._public(self._get("vm", args[0]).data),
            ("POST", "/v2/vms/{vm_id}/terminate"): lambda: self._vm_action(args[0], "terminate"),
            ("POST", "/v2/vms/{vm_id}/restart"): lambda: self._vm_action(args[0], "restart"),
            ("GET", "/v2/vms/{vm_id}/interfaces"): lambda: self._interfaces(args[0]),
            ("PATCH", "/v2/vms/{vm_id}/interfaces/{interface_id}"): lambda: self._bind(args[0], args[1], body),
        }  # fmt: skip
        handler = table.get((m, t))
        if handler is None:
            self.violations.append(f"{m} {t}: in the spec but not in the fake")
            raise HttpError(500, "internal_server_error", "not implemented by the fake")
        return 200, handler()

    def _catalogue_answer(self, items: list[dict[str, Any]]) -> Any:
        return items if self.bare_catalogues else {"items": items}

    def _cluster_dto(self, c: dict[str, Any]) -> dict[str, Any]:
        if self.snake_dc_id:
            return {"id": c["id"], "name": c["name"], "dc_id": c["dcId"]}
        return dict(c)

    def _cluster(self, cluster_id: str) -> dict[str, Any] | None:
        return next((c for c in self.clusters if c["id"] == cluster_id), None)

    def _me(self) -> dict[str, Any]:
        enum = set(spec().doc["components"]["schemas"]["PermissionScope"]["enum"])
        scopes = {s.replace("security_group:", "security_groups:") for s in self.keys[self.api_key]}
        return {
            "id": self.user_id,
            "email": "dev@example.org",
            "permissions": sorted(scopes & enum),
        }

    def _balances(self) -> list[dict[str, Any]]:
        return [{"balance": str(self.balance), "usage": "0", "estimatedUsage": "0", "overage": "0",
                 "totalDepositedAmount": str(self.balance), "userId": self.user_id,
                 "featureKey": "compute", "usageDaysLeft": None}]  # fmt: skip

    def _resources(self, cluster_id: str) -> dict[str, Any]:
        if self._cluster(cluster_id) is None:
            raise HttpError(404, "not_found", "cluster not found")
        used_ips = sum(1 for e in self._live("public_ip") if e.data["clusterId"] == cluster_id)
        used_gb = sum(
            e.data["volumeGb"] for e in self._live("storage") if e.data["clusterId"] == cluster_id
        )
        free_gb = self.storage_capacity[cluster_id] - used_gb
        families: dict[str, list[dict[str, Any]]] = {}
        configs = [c for c in self.configurations if (cluster_id, c["id"]) in self.vm_prices]
        for c in configs:
            for family in c["cpuFamilies"]:
                families[family] = [{"storageType": "NVME", "replicated": r, "volumeGb": free_gb}
                                    for (cl, r) in self.disk_prices if cl == cluster_id]  # fmt: skip
        return {
            "availableConfigurations": configs,
            "availablePublicIps": {"V4": self.ip_capacity[cluster_id] - used_ips},
            "availableStorage": families,
        }

    def _vm_prices(self, cluster_id: str | None) -> list[dict[str, Any]]:
        return [{"vmTypeId": {"vmConfigurationId": cfg, "clusterId": cl},
                 "priceInfo": {"pricePerHourPerQty": str(p)}}
                for (cl, cfg), p in self.vm_prices.items() if cluster_id in (None, cl)]  # fmt: skip

    def _disk_prices(self, cluster_id: str | None) -> list[dict[str, Any]]:
        return [{"storageTypeId": {"storageType": "NVME", "replicated": r, "clusterId": cl},
                 "priceInfo": {"pricePerHourPerQty": str(p)}}
                for (cl, r), p in self.disk_prices.items() if cluster_id in (None, cl)]  # fmt: skip

    def _ip_prices(self, cluster_id: str | None) -> list[dict[str, Any]]:
        return [{"publicIpTypeId": {"addressType": "V4", "clusterId": cl},
                 "priceInfo": {"pricePerHourPerQty": str(p)}}
                for cl, p in self.ip_prices.items() if cluster_id in (None, cl)]  # fmt: skip

    def _cost(self, body: dict[str, Any]) -> dict[str, Any]:
        secs = body.get("secs") or 3600
        lines = []
        total = Decimal(0)
        for resource in body["resources"]:
            kind, spec_ = next(iter(resource.items()))
            rid = spec_["resource_id"]
            if kind == "vm":
                hourly = self.vm_prices.get((rid["clusterId"], rid["vmConfigurationId"]))
            elif kind == "storage":
                unit = self.disk_prices.get((rid["clusterId"], rid["replicated"]))
                hourly = None if unit is None else unit * spec_["volume_gb"]
            else:
                hourly = self.ip_prices.get(rid["clusterId"])
            if hourly is None:
                raise HttpError(404, "not_found", f"no price for {kind}")
            lines.append({"resource": resource, "costPerSec": str(hourly / 3600)})
            total += hourly
        return {"costOfResources": lines, "totalCostPerSec": str(total / 3600),
                "periodSecs": secs, "totalCost": str(total * secs / 3600)}  # fmt: skip

    # --- generic collections -------------------------------------------------------------------

    def _live(self, kind: str) -> Iterator[Entity]:
        return (e for e in self.entities.values() if e.kind == kind and e.billed_until is None
                and e.data.get("status") not in ("removed", "terminated"))  # fmt: skip

    def _get(self, kind: str, entity_id: str) -> Entity:
        entity = self.entities.get(entity_id)
        if entity is None or entity.kind != kind:
            raise HttpError(404, "not_found", f"{kind} {entity_id} not found")
        return entity

    def _public(self, data: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in data.items() if not k.startswith("_")}

    def _list(self, kind: str, q: _Query) -> dict[str, Any]:
        items = [e.data for e in self.entities.values() if e.kind == kind]
        ids = q.all("ids")
        if ids:
            items = [i for i in items if i["id"] in ids]
        if q.one("name") is not None:
            pattern = re.compile(_ilike(q.one("name") or ""), re.IGNORECASE)
            items = [i for i in items if pattern.fullmatch(i["name"])]
        if q.all("status"):
            items = [i for i in items if i["status"] in q.all("status")]
        if q.all("excludeStatus"):
            items = [i for i in items if i["status"] not in q.all("excludeStatus")]
        if q.one("clusterId"):
            items = [i for i in items if i.get("clusterId") == q.one("clusterId")]
        if q.one("excludeAttached") == "true":
            items = [i for i in items if not i.get("attachedTo")]
        items.sort(key=lambda i: i.get("createdAt", ""), reverse=q.one("order") == "desc")
        per_page = min(int(q.one("perPage") or 20), self.max_per_page) or 1
        page = int(q.one("page") or self.first_page)
        index = max(0, page - self.first_page)
        chunk = items[index * per_page : (index + 1) * per_page]
        total_pages = max(1, -(-len(items) // per_page))
        return {
            "items": [self._public(i) for i in chunk],
            "pagination": {"totalRecords": len(items), "filteredRecords": len(items),
                           "totalPages": total_pages, "currentPage": page, "perPage": per_page},
        }  # fmt: skip

    def _add(self, kind: str, data: dict[str, Any], hourly: Decimal | None = None) -> Entity:
        entity = Entity(kind, data)
        if hourly is not None:
            entity.hourly = hourly
            entity.billed_since = time.monotonic()
        self.entities[data["id"]] = entity
        return entity

    def _check_name(self, name: str) -> None:
        if not NAME_RE.match(name):
            raise HttpError(
                422,
                "unprocessable_entity",
                f"invalid name {name!r}: use a-z, 0-9 and '-', at most 25",
            )

    def _check_balance(self, new_hourly: Decimal) -> None:
        live = sum((e.hourly for e in self.entities.values()
                    if e.billed_since is not None and e.billed_until is None), Decimal(0))  # fmt: skip
        if self.balance < (live + new_hourly) * 6:
            raise HttpError(
                402, "insufficient_balance", "Insufficient balance to run the resources for 6 hours"
            )

    def _delete(self, kind: str, entity_id: str) -> dict[str, Any]:
        entity = self._get(kind, entity_id)
        d = entity.data
        if d["status"] in ("removing", "removed"):
            return self._public(d)
        attached = d.get("attachedTo")
        if attached:
            raise HttpError(409, "conflict", f"{kind} {d['name']} is attached")
        self._enter(entity, "removing", time.monotonic())
        self._schedule(entity, (self.timing.resource_removing, "removed"))
        return self._public(d)

    # --- ssh keys ------------------------------------------------------------------------------

    def _create_ssh_key(self, body: dict[str, Any]) -> dict[str, Any]:
        parts = body["publicKey"].split()
        if len(parts) < 2 or parts[0] not in KEY_TYPES:
            raise HttpError(422, "unprocessable_entity", "unsupported public key")
        try:
            blob = base64.b64decode(parts[1], validate=True)
        except ValueError as exc:
            raise HttpError(422, "unprocessable_entity", "public key is not base64") from exc
        fingerprint = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip(
            "="
        )
        if any(
            e.data["fingerprint"] == fingerprint
            for e in self.entities.values()
            if e.kind == "ssh_key"
        ):
            raise HttpError(409, "conflict", "this key is already registered")
        data = {"id": _id(), "userId": self.user_id, "name": body["name"],
                "publicKey": body["publicKey"], "algorithm": parts[0], "fingerprint": fingerprint}  # fmt: skip
        return self._add("ssh_key", data).data

    def _delete_ssh_key(self, key_id: str) -> dict[str, Any]:
        entity = self._get("ssh_key", key_id)
        del self.entities[key_id]
        return entity.data

    # --- public IPs, storages, groups ----------------------------------------------------------

    def _resource_data(self, body: dict[str, Any]) -> dict[str, Any]:
        if self._cluster(body["clusterId"]) is None:
            raise HttpError(404, "not_found", "cluster not found")
        self._check_name(body["name"])
        return {"id": _id(), "userId": self.user_id, "clusterId": body["clusterId"],
                "name": body["name"], "status": "new", "createdAt": _now_iso(),
                "readySince": None, "removedAt": None, "allowedActions": ["update", "delete", "attachToVm"]}  # fmt: skip

    def _create_ip(
        self, body: dict[str, Any], check_balance: bool = True
    ) -> tuple[Decimal, Entity]:
        data = self._resource_data(body)
        price = self.ip_prices.get(body["clusterId"])
        if price is None:
            raise HttpError(404, "not_found", "public IPs are not sold in this cluster")
        if check_balance:
            self._check_balance(price)
        used = sum(1 for e in self._live("public_ip") if e.data["clusterId"] == body["clusterId"])
        if used >= self.ip_capacity[body["clusterId"]]:
            raise HttpError(422, "unprocessable_entity", "no public IPv4 left in this cluster")
        data.update({"addressType": body["addressType"], "address": None, "attachedTo": None,
                     "priceHourlyUsd": str(price), "priceMonthlyUsd": str(price * 730),
                     "lastPaidAt": None, "paidUntil": None})  # fmt: skip
        entity = self._add("public_ip", data, price)
        self._schedule(
            entity, (self.timing.resource_new, "created"), (self.timing.resource_created, "ready")
        )
        return price, entity

    def _storage_price(self, body: dict[str, Any]) -> Decimal:
        unit = self.disk_prices.get((body["clusterId"], body["replicated"]))
        if unit is None:
            raise HttpError(404, "not_found", "this storage is not sold in this cluster")
        if body["volumeGb"] < self.min_volume_gb:
            raise HttpError(
                422, "unprocessable_entity", f"volumeGb must be at least {self.min_volume_gb}"
            )
        return unit * body["volumeGb"]

    def _create_storage(
        self, body: dict[str, Any], role: str, vm: str | None, check_balance: bool = True
    ) -> Entity:
        data = self._resource_data(body)
        price = self._storage_price(body)
        if check_balance:
            self._check_balance(price)
        data.update({"storageType": "NVME", "role": role, "volumeGb": body["volumeGb"],
                     "replicated": body["replicated"], "attachedTo": [vm] if vm else [],
                     "initUrl": body.get("osImage"), "image": None, "priceHourlyUsd": str(price),
                     "priceMonthlyUsd": str(price * 730), "lastPaidAt": None, "paidUntil": None})  # fmt: skip
        entity = self._add("storage", data, price)
        self._schedule(
            entity, (self.timing.resource_new, "created"), (self.timing.resource_created, "ready")
        )
        return entity

    def _tagged(self, rules: list[dict[str, Any]] | None) -> dict[str, Any]:
        if rules is None:
            return {"type": "allowAll"}
        for rule in rules:
            group = rule["remote"].get("securityGroup")
            if (
                group is not None
                and self.entities.get(group, Entity("", {})).kind != "security_group"
            ):
                raise HttpError(422, "unprocessable_entity", f"unknown security group {group}")
        return {"type": "allow", "rules": rules}

    def _create_group(self, body: dict[str, Any]) -> dict[str, Any]:
        data = self._resource_data(body)
        del data["allowedActions"]
        data.update({"vpcId": self.default_vpcs[body["clusterId"]], "attachedTo": [],
                     "ingressRules": self._tagged(body.get("ingressRules")),
                     "egressRules": self._tagged(body.get("egressRules"))})  # fmt: skip
        entity = self._add("security_group", data)
        self._schedule(
            entity, (self.timing.resource_new, "created"), (self.timing.resource_created, "ready")
        )
        return entity.data

    def _update_group(self, group_id: str, body: dict[str, Any]) -> dict[str, Any]:
        entity = self._get("security_group", group_id)
        for direction in ("ingressRules", "egressRules"):
            if direction in body:
                value = body[direction]
                entity.data[direction] = {"type": "allowAll"} if value is None else value
                if value is not None and value["type"] == "allow":
                    self._tagged(value["rules"])
        if body.get("name"):
            entity.data["name"] = body["name"]
        self._enter(entity, "updating", time.monotonic())
        self._schedule(entity, (self.timing.group_updating, "ready"))
        return entity.data

    # --- VMs -----------------------------------------------------------------------------------

    def _create_vm(self, body: dict[str, Any]) -> dict[str, Any]:
        cluster_id = body["clusterId"]
        if self._cluster(cluster_id) is None:
            raise HttpError(404, "not_found", "cluster not found")
        self._check_name(body["name"])
        config = body["configurationId"]
        vm_price = self.vm_prices.get((cluster_id, config))
        if vm_price is None:
            raise HttpError(404, "not_found", "configuration not available in this cluster")
        for key_id in body.get("sshKeys", []):
            self._get("ssh_key", key_id)
        user_data = (body.get("cloudInit") or {}).get("userData")
        if user_data is not None and len(user_data.encode("utf-8")) > USER_DATA_LIMIT:
            raise HttpError(400, "bad_request", "cloudInit.userData exceeds 16 KiB")
        boot, ip = body["bootDisk"], body.get("publicIp")
        new_hourly = vm_price
        if isinstance(boot, dict):
            if boot["clusterId"] != cluster_id:
                raise HttpError(
                    422, "unprocessable_entity", "the boot disk must be in the VM's cluster"
                )
            self._check_name(boot["name"])
            new_hourly += self._storage_price(boot)
        else:
            if self._get("storage", boot).data["attachedTo"]:
                raise HttpError(409, "conflict", "the boot disk is attached")
        if isinstance(ip, dict):
            new_hourly += self.ip_prices[cluster_id]
        elif isinstance(ip, str):
            existing = self._get("public_ip", ip).data
            if existing["attachedTo"] is not None or existing["status"] != "ready":
                raise HttpError(409, "conflict", "the public IP is attached or not ready")
        self._check_balance(new_hourly)
        # Committing from here on.
        vm_id = _id()
        name = body["name"]
        boot_entity = (self._create_storage(boot, "BOOT", vm_id, check_balance=False)
                       if isinstance(boot, dict) else self._get("storage", boot))  # fmt: skip
        boot_entity.data["attachedTo"] = [vm_id]
        ip_entity = None
        if isinstance(ip, dict):
            ip_entity = self._create_ip(ip, check_balance=False)[1]
        elif isinstance(ip, str):
            ip_entity = self._get("public_ip", ip)
        if ip_entity is not None:
            ip_entity.data["attachedTo"] = {"id": vm_id, "name": name}
        cfg = next(c for c in self.configurations if c["id"] == config)
        private = {"id": _id(), "default": True, "kind": {"private": {"subnet": self.default_subnets[cluster_id]}},
                   "securityGroup": None}  # fmt: skip
        interfaces = [private]
        if ip_entity is not None:
            interfaces.append({"id": _id(), "default": False,
                               "kind": {"public": {"public_ip": ip_entity.data["id"]}}, "securityGroup": None})  # fmt: skip
        now = _now_iso()
        data = {"id": vm_id, "userId": self.user_id, "clusterId": cluster_id, "configurationId": config,
                "name": name, "status": "new", "restartRequired": False, "allowedActions": ["terminate"],
                "bootDisk": boot_entity.data["id"], "dataDisks": [], "subnets": [self.default_subnets[cluster_id]],
                "sshKeys": list(body.get("sshKeys", [])), "networkInterfaces": [i["id"] for i in interfaces],
                "createdAt": now, "updatedAt": now, "publicIp": None if ip_entity is None else ip_entity.data["id"],
                "cloudInit": None if user_data is None else {}, "readySince": None, "terminatedAt": None,
                "lastPaidAt": None, "paidUntil": None, "priceHourlyUsd": str(vm_price),
                "priceMonthlyUsd": str(vm_price * 730), "vcpu": cfg["vcpu"], "ramGb": cfg["ramGb"],
                "configurationName": cfg["name"], "configurationSlug": cfg["slug"], "expanded": None,
                "_interfaces": interfaces}  # fmt: skip
        entity = self._add("vm", data, vm_price)
        if user_data is not None:
            self.user_data[vm_id] = user_data
        fails = (name in self.failing_vms or not str(_image_url(boot_entity.data)).lower().endswith(IMAGE_SUFFIXES)
                 or (user_data is not None and not _valid_yaml(user_data)))  # fmt: skip
        final = "failed" if fails else "launched"
        self._schedule(entity, (self.timing.vm_new, "launching"), (self.timing.vm_launching, final))
        return self._public(data)

    def _vm_action(self, vm_id: str, action: str) -> dict[str, Any]:
        entity = self._get("vm", vm_id)
        if action not in entity.data["allowedActions"]:
            raise HttpError(
                406, "not_acceptable", f"{action} is not allowed in status {entity.data['status']}"
            )
        if action == "terminate":
            self._enter(entity, "terminating", time.monotonic())
            self._schedule(entity, (self.timing.vm_terminating, "terminated"))
        else:
            self._enter(entity, "restarting", time.monotonic())
            self._schedule(entity, (self.timing.vm_restarting, "launched"))
        return self._public(entity.data)

    def _interfaces(self, vm_id: str) -> list[dict[str, Any]]:
        return [dict(i) for i in self._get("vm", vm_id).data["_interfaces"]]

    def _bind(self, vm_id: str, iface_id: str, body: dict[str, Any]) -> dict[str, Any]:
        entity = self._get("vm", vm_id)
        if "updateNetworkInterface" not in entity.data["allowedActions"]:
            raise HttpError(
                406, "not_acceptable", f"interfaces cannot change in status {entity.data['status']}"
            )
        iface = next((i for i in entity.data["_interfaces"] if i["id"] == iface_id), None)
        if iface is None:
            raise HttpError(404, "not_found", "interface not found")
        group_id = body.get("securityGroupId")
        if iface["securityGroup"]:
            old = self.entities[iface["securityGroup"]].data
            old["attachedTo"] = [i for i in old["attachedTo"] if i != iface_id]
        if group_id is not None:
            group = self._get("security_group", group_id).data
            if group["clusterId"] != entity.data["clusterId"]:
                raise HttpError(422, "unprocessable_entity", "the group is in another cluster")
            group["attachedTo"].append(iface_id)
        iface["securityGroup"] = group_id
        if self.restart_required_on_bind:
            entity.data["restartRequired"] = True
        return self._public(entity.data)


class _Query:
    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.pairs if k == name or k.startswith(name + "[")]

    def one(self, name: str) -> str | None:
        values = self.all(name)
        return values[-1] if values else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One buffered write per answer, no Nagle: otherwise each call waits for a delayed ACK.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True
    fake: FluenceFake

    def do_GET(self) -> None:
        self.fake.handle(self)

    do_POST = do_PATCH = do_DELETE = do_PUT = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _ilike(pattern: str) -> str:
    out = []
    for ch in pattern:
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    return "".join(out)


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = spec().doc
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _coerce(value: str, schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    if kind == "integer":
        try:
            return int(value)
        except ValueError:
            return value
    if kind == "boolean":
        return {"true": True, "false": False}.get(value, value)
    return value


def _image_url(storage: dict[str, Any]) -> str:
    return str(storage.get("initUrl") or "")


def _valid_yaml(text: str) -> bool:
    try:
        yaml.safe_load(text)
    except yaml.YAMLError:
        return False
    return True
