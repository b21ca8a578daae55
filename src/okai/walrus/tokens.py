"""Publisher JWTs: single-use, so every store request carries a fresh one.

An authenticated publisher keeps each token's `jti` until the token expires
and refuses it a second time (reference/walrus.md section 8), so one token
stores one blob. `PublisherTokens` hands them out, one per request:

- `OKAI_WALRUS_JWT`: one token, or several separated by commas or white
  space, used in order;
- `OKAI_WALRUS_JWT_COMMAND`: a command printing a fresh token on stdout (the
  operator's token service), run whenever the list is used up. It is split
  like a shell line and run without a shell.

Tokens never appear in messages, not even the command's output.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import threading
from collections import deque
from collections.abc import Sequence

from okai.config import Secrets
from okai.errors import OperationalError, UsageError

TOKENS_ENV = "OKAI_WALRUS_JWT"
COMMAND_ENV = "OKAI_WALRUS_JWT_COMMAND"
COMMAND_TIMEOUT_S = 30.0
_SEPARATORS = re.compile(r"[\s,]+")
_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$")
MORE_TOKENS_HINT = (
    f"put fresh tokens in {TOKENS_ENV}, or set {COMMAND_ENV} to a command printing one"
)


class TokensUsedUp(OperationalError):
    """Every token given was used and no command is set to make more."""


class TokenCommandFailed(OperationalError):
    """The token command failed, timed out or printed no token."""


class PublisherTokens:
    """Single-use publisher tokens, handed out in order (thread-safe); see the module doc."""

    def __init__(self, tokens: Sequence[str] = (), command: str | None = None) -> None:
        for token in tokens:
            _check(token, f"a token in {TOKENS_ENV}")
        self._pool = deque(tokens)
        self._given = len(tokens)
        self._argv = shlex.split(command) if command else None
        self._lock = threading.Lock()

    @classmethod
    def parse(cls, tokens: str | None, command: str | None = None) -> PublisherTokens | None:
        """From the two variables' values; `None` when neither is set."""
        listed = [t for t in _SEPARATORS.split(tokens or "") if t]
        if not listed and not command:
            return None
        return cls(listed, command)

    @classmethod
    def from_secrets(cls, secrets: Secrets) -> PublisherTokens | None:
        listed = secrets.walrus_jwt.get_secret_value() if secrets.walrus_jwt else None
        return cls.parse(listed, secrets.walrus_jwt_command)

    @property
    def listed(self) -> int:
        """How many of the listed tokens are left."""
        return len(self._pool)

    def take(self) -> str:
        """The next unused token: a listed one, else a new one from the command."""
        with self._lock:
            if self._pool:
                return self._pool.popleft()
            if self._argv is None:
                raise TokensUsedUp(
                    f"the {self._given} publisher token(s) in {TOKENS_ENV} are used up "
                    "(each token stores one blob)",
                    hint=MORE_TOKENS_HINT,
                )
            return self._run_command()

    def handover(self, count: int) -> str:
        """Tokens for another process (a cluster node), as one `OKAI_WALRUS_JWT` value.

        The listed ones that are left, as they are (a token used here first is
        skipped there), topped up to `count` from the command when one is set.
        """
        with self._lock:
            tokens = list(self._pool)
            if self._argv is not None:
                tokens += [self._run_command() for _ in range(count - len(tokens))]
            return ",".join(tokens)

    def _run_command(self) -> str:
        assert self._argv is not None
        name = self._argv[0]
        try:
            done = subprocess.run(
                self._argv, capture_output=True, timeout=COMMAND_TIMEOUT_S, check=False
            )
        except FileNotFoundError:
            raise UsageError(
                f"{COMMAND_ENV}: no such command {name!r}", hint="give a full path"
            ) from None
        except subprocess.TimeoutExpired:
            raise TokenCommandFailed(
                f"{COMMAND_ENV} ({name}) printed no token within {COMMAND_TIMEOUT_S:.0f} s"
            ) from None
        except OSError as exc:
            raise TokenCommandFailed(f"{COMMAND_ENV} ({name}) cannot run: {exc.strerror}") from None
        if done.returncode != 0:
            raise TokenCommandFailed(
                f"{COMMAND_ENV} ({name}) failed with exit status {done.returncode}",
                hint="run it yourself to see why; its output is not shown, as it may hold a token",
            )
        token = done.stdout.decode("utf-8", errors="replace").strip()
        _check(token, f"the output of {COMMAND_ENV} ({name})")
        return token


def _check(token: str, what: str) -> None:
    if not _JWT.match(token):
        raise UsageError(
            f"{what} is not a JWT (three base64url parts joined by dots)",
            hint="the token itself is not shown; check how it was set",
        )
