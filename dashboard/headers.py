"""The security headers of every answer: a Content-Security-Policy, no framing, no sniffing, HSTS over https.

The pages load their scripts and their one stylesheet from /assets only (no inline script, no event
attributes, no <style> element or style attribute: tests keep it so), so `script-src 'self'` and
`style-src 'self'` hold. The live feed's socket is the only other connection a page makes.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response

from clarity.settings import Settings

HSTS = "max-age=31536000"  # a year; no includeSubDomains: the operator's other hosts are not ours to decide
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def origin(url: str, scheme: str | None = None) -> str:
    """The origin (`scheme://host[:port]`, lower case, default port left out) of `url`, as browsers send it."""
    parts = urlsplit(url.strip())
    scheme = (scheme or parts.scheme).lower()
    host = (parts.hostname or "").lower()
    host = f"[{host}]" if ":" in host else host
    try:
        port = parts.port
    except ValueError:
        return ""
    return f"{scheme}://{host}" + (f":{port}" if port and port != DEFAULT_PORTS.get(scheme) else "")


def policy(settings: Settings) -> str:
    """The dashboard's Content-Security-Policy."""
    socket = origin(settings.public_url, "wss" if settings.public_url.startswith("https:") else "ws")
    return "; ".join((
        "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
        f"connect-src 'self' {socket}", "form-action 'self'", "frame-ancestors 'none'", "base-uri 'none'",
        "object-src 'none'"))


def headers_for(settings: Settings) -> dict[str, str]:
    """The headers every answer carries unless its view set its own."""
    found = {"Content-Security-Policy": policy(settings), "X-Frame-Options": "DENY",
             "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
             "Cross-Origin-Opener-Policy": "same-origin",
             "Cache-Control": "no-store"}  # customers' data stays out of shared caches (static files set theirs)
    if settings.public_url.startswith("https:"):
        found["Strict-Transport-Security"] = HSTS
    return found


def init_app(app: Flask, settings: Settings) -> None:
    """Add the headers to every answer of `app`."""
    fixed = headers_for(settings)

    def add(response: Response) -> Response:
        for name, value in fixed.items():
            response.headers.setdefault(name, value)
        return response

    app.after_request(add)
