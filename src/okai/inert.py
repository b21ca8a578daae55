"""Strangers' strings made inert for terminals, logs and JSON.

Records, attestations, manifests, blobs, RPC and aggregator answers are written by
someone else. Shown as they are, an ESC sequence recolours or rewrites the screen, an
OSC 8 sequence hides a link, U+009B opens a control sequence on many terminals, and a
bidirectional override (U+202E) or isolate (U+2066) reorders the line a person reads.
`inert` escapes each of those visibly (`\\u001b`), so what is shown is what was sent.
"""

from __future__ import annotations

import json
import re
from typing import Any

_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f"  # C0 controls (ESC among them), DEL, C1 controls (U+009B CSI)
    "\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]"  # bidi, invisible
)


def inert(value: Any, limit: int | None = None) -> str:
    """`str(value)` with control, bidi and invisible characters escaped; cut at `limit`."""
    text = str(value)
    more = 0 if limit is None else len(text) - limit
    if more > 0:
        text = text[:limit]
    safe = _UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
    return safe + (f"… ({more} more characters)" if more > 0 else "")


def inert_json(data: Any, indent: int | None = 2) -> str:
    """One JSON document in printable ASCII: every non-ASCII or control character escaped."""
    text = json.dumps(data, default=str, ensure_ascii=True, indent=indent)
    # DEL is ASCII, so ensure_ascii keeps it; it can appear only inside strings.
    return text.replace("\x7f", "\\u007f")
