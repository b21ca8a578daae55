"""The optional JWT check of an authenticated publisher (HS256 only; reference section 8).

A token must be signed with the shared secret, carry `exp` and `jti`, not be
expired, and be used once. Failures map to the real publisher's answers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

AUTH_DOMAIN = "auth.publisher.walrus.space"


@dataclass(frozen=True)
class AuthFailure:
    """How to answer a rejected token: HTTP status, envelope status name and reason."""

    http_status: int
    status: str
    reason: str
    message: str


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def make_token(secret: str, claims: dict[str, Any]) -> str:
    """An HS256 JWT (for tests and for operators of the local server)."""
    header = _b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64encode(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64encode(signature)}"


class JwtChecker:
    """Verifies HS256 tokens and remembers used `jti`s until they expire."""

    def __init__(self, secret: str) -> None:
        self._key = bytes.fromhex(secret[2:]) if secret.startswith("0x") else secret.encode()
        self._used: dict[str, float] = {}
        self._lock = threading.Lock()

    def check(self, token: str) -> AuthFailure | None:
        """None when the token is good (and now used up); else how to refuse it."""
        try:
            header_b64, payload_b64, signature_b64 = token.split(".")
            header = json.loads(_b64decode(header_b64))
            claims = json.loads(_b64decode(payload_b64))
            signature = _b64decode(signature_b64)
        except ValueError:
            return AuthFailure(400, "INVALID_ARGUMENT", "INVALID_TOKEN", "the token is malformed")
        if (
            not isinstance(header, dict)
            or header.get("alg") != "HS256"
            or not isinstance(claims, dict)
        ):
            return AuthFailure(400, "INVALID_ARGUMENT", "INVALID_TOKEN", "unsupported token")
        expected = hmac.new(self._key, f"{header_b64}.{payload_b64}".encode(), hashlib.sha256)
        if not hmac.compare_digest(expected.digest(), signature):
            return AuthFailure(401, "UNAUTHENTICATED", "INVALID_SIGNATURE", "invalid signature")
        exp, jti = claims.get("exp"), claims.get("jti")
        if not isinstance(exp, int | float) or not isinstance(jti, str):
            return AuthFailure(400, "INVALID_ARGUMENT", "INVALID_TOKEN", "exp and jti are required")
        now = time.time()
        if exp <= now:
            return AuthFailure(504, "DEADLINE_EXCEEDED", "EXPIRED_SIGNATURE", "the token expired")
        with self._lock:
            for old in [k for k, until in self._used.items() if until <= now]:
                del self._used[old]
            if jti in self._used:
                return AuthFailure(
                    429, "RESOURCE_EXHAUSTED", "TOKEN_ALREADY_USED", "the token was already used"
                )
            self._used[jti] = float(exp)
        return None
