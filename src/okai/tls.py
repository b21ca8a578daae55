"""The one TLS context of the process, shared by every HTTP client okai makes.

Loading the CA bundle costs 20 to 50 ms, and httpx loads it for every client it
builds, even one that only speaks plain HTTP to loopback: a command building a
few clients, or a proxy building one per request, spent most of its time there.
An `ssl.SSLContext` is safe to share between clients and threads.
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default context (certifi's CAs, or SSL_CERT_FILE / SSL_CERT_DIR), built once."""
    return httpx.create_ssl_context()
