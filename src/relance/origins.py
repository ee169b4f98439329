"""Which origins may send cookie-authenticated writes (cross-site request forgery). Pure.

A browser attaches relance's cookie to any request for relance's host, even one a page of
another site makes it send. It also says where that page lives (``Origin``, else ``Referer``):
a write carried by the cookie alone is accepted only from relance's own origin, ``PUBLIC_URL``.
A request authenticated by an ``Authorization`` header is not at risk: no page can make a
browser add that header to a request for another site.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str | None:
    """``scheme://host:port`` of a URL (default port written out), or None if it has none."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port or _DEFAULT_PORTS[scheme]}"


def allowed_origins(public_url: str) -> frozenset[str]:
    """``PUBLIC_URL``'s origin; on a loopback address, its other loopback names too.

    ``relance up`` prints ``http://127.0.0.1:8000``; someone who types ``localhost:8000``
    is on the same machine and port, and no other site can be served from there.
    """
    own = origin_of(public_url)
    if own is None:
        return frozenset()
    parts = urlsplit(own)
    if parts.hostname not in LOOPBACK_HOSTS:
        return frozenset({own})
    names = ("127.0.0.1", "localhost", "[::1]")
    return frozenset(f"{parts.scheme}://{name}:{parts.port}" for name in names)


def cross_site_refusal(
    method: str, headers: Mapping[str, str], allowed: frozenset[str]
) -> str | None:
    """Why this cookie-authenticated request must be refused, or None if it may go on.

    ``headers`` has lower-case names. Safe methods change nothing and always pass.
    """
    if method.upper() in SAFE_METHODS:
        return None
    claimed = headers.get("origin") or headers.get("referer")
    if not claimed:
        return "a write authenticated by the session cookie must say its Origin"
    origin = origin_of(claimed)
    if origin is None or origin not in allowed:
        shown = claimed[:100]
        return f"cross-site request refused: {shown!r} is not this site's origin (PUBLIC_URL)"
    return None
