"""Where the recorded session's token travelled, what the token looks like, and every secret.

The token is found by looking for a JWT (``eyJ...``) in the upgrade: the offered
subprotocols, the query, a cookie, any header; or for a ticket: a query value that an
earlier HTTP answer handed out. A login or token request is recognised by its answer
holding the token. Every secret seen (the token, cookies, authorization headers,
passwords, tickets) is collected so that no output ever repeats it.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from wsload.har.reader import HttpExchange, Recording, WebSocketSession, header

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
SECRET_NAMES = re.compile(
    r"token|ticket|secret|password|passwd|pwd|auth|session|key|cookie|credential|sid",
    re.IGNORECASE,
)
# A password may be short and hold spaces; another secret (a token, ticket, session id) is
# one opaque word of some length; anything else under such a name (a label, a translated
# sentence, "open") is no secret, and replacing it everywhere would mangle the outputs.
PASSWORD_NAMES = re.compile(r"password|passwd|pwd|secret|credential", re.IGNORECASE)
MULTIPART_FIELD = re.compile(r'name="([^"]+)"\r\n\r\n(.*?)\r\n--', re.DOTALL)
SUBJECT_CLAIMS = ("identifier", "user_id", "uid", "username", "preferred_username", "email")
RESERVED_CLAIMS = ("sub", "iat", "exp", "jti", "iss", "aud", "nbf")


@dataclass
class AuthFindings:
    """The carrier keys of ``[auth]``, the ``[token]`` keys, and notes on both."""

    auth: dict[str, Any] = field(default_factory=dict)
    token: dict[str, Any] = field(default_factory=dict)
    token_value: str | None = None
    subject: str | None = None
    connect_auth: dict[str, Any] | None = None  # Socket.IO CONNECT payload, a template
    notes: list[str] = field(default_factory=list)
    todo: list[str] = field(default_factory=list)


def decode_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The header and claims of a JWT, unverified; None when it is not one."""
    try:
        head, body, _sig = token.split(".")
        decoded = [
            json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))) for p in (head, body)
        ]
    except (ValueError, UnicodeDecodeError):
        return None
    if not all(isinstance(d, dict) for d in decoded):
        return None
    return decoded[0], decoded[1]


def cookies_of(headers: tuple[tuple[str, str], ...]) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header(headers, "Cookie") or "")
    except Exception:  # a cookie header the stdlib parser refuses: no names from it
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


def collect_secrets(recording: Recording) -> set[str]:
    """Every value in the recording that may be a secret, longest first when replaced."""
    found: set[str] = set()

    def scan_text(text: str) -> None:
        found.update(JWT.findall(text))

    def scan_pairs(pairs: list[tuple[str, str]] | dict[str, Any]) -> None:
        items = pairs.items() if isinstance(pairs, dict) else pairs
        for name, value in items:
            if isinstance(value, str) and _secret_value(str(name), value):
                found.add(value)
            elif isinstance(value, dict):
                scan_pairs(value)

    for session in recording.sessions:
        scan_text(session.url)
        scan_pairs(list(session.query.items()))
        for name, value in session.request_headers:
            scan_text(value)
            lowered = name.lower()
            named = lowered in ("authorization", "cookie") or SECRET_NAMES.search(name)
            if named and lowered not in ("sec-websocket-key", "sec-websocket-extensions"):
                found.add(value)
        found.update(v for v in cookies_of(session.request_headers).values() if len(v) >= 4)
        for frame in session.frames:
            scan_text(frame.data)
            if frame.sent:  # what the page sent: a refresh or CONNECT payload, a password
                _scan_json(frame.data, scan_pairs)
    for exchange in recording.http:
        scan_text(exchange.url)
        scan_pairs(list(exchange.query.items()))
        for name, value in (*exchange.request_headers, *exchange.response_headers):
            scan_text(value)
            if name.lower() in ("authorization", "cookie", "set-cookie"):
                found.add(value)
                found.update(
                    v.split(";")[0].partition("=")[2] for v in value.split("\n") if "=" in v
                )
        found.update(v for v in cookies_of(exchange.request_headers).values() if len(v) >= 4)
        for text in (exchange.request_body, exchange.response_body):
            scan_text(text)
            _scan_json(text, scan_pairs)
            if "=" in text and "{" not in text:
                scan_pairs(parse_qsl(text))
            scan_pairs(MULTIPART_FIELD.findall(text))  # a login form sent as FormData
    for session in recording.sessions:
        for entry in _subprotocols(session):
            for secret in list(found):
                if secret in entry:
                    found.add(entry)
    return {s for s in found if len(s) >= 4}


def _secret_value(name: str, value: str) -> bool:
    if PASSWORD_NAMES.search(name):
        return 4 <= len(value) <= 128 and value.count(" ") < 3
    return bool(SECRET_NAMES.search(name)) and len(value) >= 8 and not re.search(r"\s", value)


def _scan_json(text: str, scan_pairs) -> None:
    start = text.find("{")
    if start < 0:
        return
    try:
        value = json.loads(text[start:])
    except ValueError:
        return
    if isinstance(value, dict):
        scan_pairs(value)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                scan_pairs(item)


def _subprotocols(session: WebSocketSession) -> list[str]:
    offered = header(session.request_headers, "Sec-WebSocket-Protocol") or ""
    return [p.strip() for p in offered.split(",") if p.strip()]


def infer_carrier(session: WebSocketSession, recording: Recording) -> AuthFindings:
    """The ``[auth]`` carrier keys and the token, from the session's upgrade request; the
    subprotocols the page offered besides the token."""
    out = _carrier(session, recording)
    carrier = out.auth.get("carrier")
    plain = [p for p in _subprotocols(session) if not _token_in(p)]
    chosen = header(session.response_headers, "Sec-WebSocket-Protocol")
    if plain and carrier == "ticket":
        out.auth["subprotocol"] = chosen or plain[0]
    elif plain and carrier in ("query", "cookie", "header"):
        out.notes.append(f"subprotocols offered: {', '.join(plain)} (chosen: {chosen or 'none'})")
        out.todo.append(
            f"the page offered the subprotocol(s) {', '.join(plain)}; wsload offers one only "
            "with the subprotocol and ticket carriers: check the server accepts an upgrade "
            "without it"
        )
    return out


def _carrier(session: WebSocketSession, recording: Recording) -> AuthFindings:
    out = AuthFindings()
    offered = _subprotocols(session)
    chosen = header(session.response_headers, "Sec-WebSocket-Protocol")
    for entry in offered:
        token = _token_in(entry)
        if token:
            prefix = entry[: entry.index(token)] if token in entry else entry.split(".")[0] + "."
            encoding = "raw" if token in entry else "base64url"
            bare = chosen or next((p for p in offered if p != entry), "")
            out.auth = {
                "carrier": "subprotocol",
                "subprotocol": bare,
                "subprotocol_token_prefix": prefix,
                "subprotocol_token_encoding": encoding,
            }
            out.notes.append(
                f"token: in the offered subprotocols as '{prefix}<token>' ({encoding}), "
                f"next to '{bare}' (the one the server chose back: {chosen or 'none'})"
            )
            return with_token(out, token)
    for name, value in session.query.items():
        token = _token_in(value)
        if token:
            out.auth = {"carrier": "query", "query_param": name, "subprotocol": ""}
            out.notes.append(f"token: in the query parameter '{name}'")
            return with_token(out, token)
    for name, value in cookies_of(session.request_headers).items():
        token = _token_in(value)
        if token:
            out.auth = {"carrier": "cookie", "cookie_name": name, "subprotocol": ""}
            out.notes.append(f"token: in the cookie '{name}'")
            return with_token(out, token)
    for name, value in session.request_headers:
        token = _token_in(value)
        if token and name.lower() != "cookie":
            out.auth = {
                "carrier": "header",
                "header_name": name,
                "header_format": value.replace(token, "{token}"),
                "subprotocol": "",
            }
            out.notes.append(
                f"token: in the header '{name}' as '{value.replace(token, '{token}')}' "
                "(browsers cannot set headers on a WebSocket: runs need --client-mode native)"
            )
            return with_token(out, token)
    ticket = _ticket(session, recording)
    if ticket is not None:
        exchange, param, field_name, token = ticket
        out.auth = {
            "carrier": "ticket",
            "ticket_path": exchange.path,
            "ticket_param": param,
            "ticket_field": field_name,
            "subprotocol": "",
        }
        out.notes.append(
            f"token: traded for a one-time ticket (POST {exchange.path}, answer field "
            f"'{field_name}'), the ticket in the query parameter '{param}'"
        )
        return with_token(out, token) if token else out
    cookie = _host_cookie(session, recording)
    if cookie is not None:
        name, token = cookie
        out.auth = {"carrier": "cookie", "cookie_name": name, "subprotocol": ""}
        out.notes.append(
            f"token: in the cookie '{name}' the browser holds for this host (set or sent on "
            "its HTTP requests; the HAR shows no cookies of the WebSocket itself)"
        )
        return with_token(out, token)
    return out


def _host_cookie(session: WebSocketSession, recording: Recording) -> tuple[str, str] | None:
    """A JWT cookie of the WebSocket's host: sent on its HTTP requests, or set by them."""
    host = urlsplit(session.url).hostname
    for exchange in recording.http:
        if urlsplit(exchange.url).hostname != host:
            continue
        for name, value in cookies_of(exchange.request_headers).items():
            if token := _token_in(value):
                return name, token
        for name, value in exchange.response_headers:
            if name.lower() != "set-cookie":
                continue
            for line in value.split("\n"):
                cookie_name, _, rest = line.partition("=")
                if token := _token_in(rest.split(";")[0]):
                    return cookie_name.strip(), token
    return None


def _token_in(value: str) -> str | None:
    match = JWT.search(value)
    if match:
        return match.group(0)
    for part in re.split(r"[.,;\s]", value):  # a base64url-encoded token in a subprotocol
        if len(part) > 40:
            try:
                decoded = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode()
            except (ValueError, UnicodeDecodeError):
                continue
            if JWT.fullmatch(decoded):
                return part
    return None


def _ticket(
    session: WebSocketSession, recording: Recording
) -> tuple[HttpExchange, str, str, str | None] | None:
    for param, value in session.query.items():
        if len(value) < 8:
            continue
        for exchange in recording.http:
            try:
                answer = json.loads(exchange.response_body or "null")
            except ValueError:
                continue
            if not isinstance(answer, dict):
                continue
            for field_name, field_value in answer.items():
                if field_value == value:
                    bearer = header(exchange.request_headers, "Authorization") or ""
                    return exchange, param, field_name, _token_in(bearer)
    return None


def with_token(out: AuthFindings, token: str) -> AuthFindings:
    out.token_value = token
    decoded = decode_jwt(token)
    if decoded is None:
        try:
            decoded = decode_jwt(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode())
        except (ValueError, UnicodeDecodeError):
            decoded = None
    if decoded is None:
        out.todo.append(
            "the token is not a JWT wsload can mint: give runs a token source (--token-source "
            "login with --credentials, or a file of tokens)"
        )
        return out
    head, claims = decoded
    subject = claims.get("sub")
    subject_claim = None
    if subject is None:  # the user named by another claim (Chainlit: identifier)
        subject_claim = next(
            (n for n in SUBJECT_CLAIMS if isinstance(claims.get(n), str) and claims[n]), None
        )
        subject = claims.get(subject_claim) if subject_claim else None
    out.subject = str(subject) if subject is not None else None
    token: dict[str, Any] = {"algorithm": str(head.get("alg", "HS256"))}
    token["issuer"] = str(claims.get("iss", ""))
    aud = claims.get("aud", "")
    token["audience"] = str(aud[0] if isinstance(aud, list) and aud else aud)
    if isinstance(claims.get("exp"), int | float) and isinstance(claims.get("iat"), int | float):
        token["lifetime_s"] = max(1, int(claims["exp"] - claims["iat"]))
    if out.subject:
        user = re.sub(r"[^A-Za-z0-9_-]", "-", out.subject.split("@")[0])
        token["subject_prefix"] = re.sub(r"[-_.:]?\d+$", "", user) or "wsload"
    if subject_claim:
        token["subject_claim"] = subject_claim
        out.notes.append(f"the token names its user in the claim '{subject_claim}' (no 'sub')")
    extra = {}
    for name, value in claims.items():
        if name in RESERVED_CLAIMS:
            continue
        if isinstance(value, str) and out.subject and out.subject in value:
            value = value.replace(out.subject, "{sub}")
        extra[name] = value
    token["claims"] = extra
    out.token = token
    signed = "a shared secret (--jwt-secret or JWT_SECRET_KEY)"
    if not token["algorithm"].startswith("HS"):
        signed = "the private key (--jwt-private-key)"
    out.notes.append(
        f"token format: a {token['algorithm']} JWT, issuer {token['issuer']!r}, audience "
        f"{token['audience']!r}, lifetime {token.get('lifetime_s', '?')} s, claims "
        f"{', '.join(sorted(extra)) or 'none beyond the standard ones'}"
    )
    out.todo.append(f"wsload mints its own tokens: runs need {signed} the backend verifies")
    return out


def login_request(recording: Recording, token: str | None) -> tuple[str, str] | None:
    """The (method, path) of the log-in, if recorded: the POST that sent no token and was
    answered with one (in its body or a cookie)."""
    if not token:
        return None
    for exchange in recording.http:
        cookies = " ".join(v for n, v in exchange.response_headers if n.lower() == "set-cookie")
        answered = JWT.search(exchange.response_body) or JWT.search(cookies)
        sent = JWT.search(exchange.request_body) or JWT.search(
            header(exchange.request_headers, "Authorization") or ""
        )
        if answered and not sent and exchange.method == "POST":
            return exchange.method, exchange.path
    return None


def refresh_request(recording: Recording) -> str | None:
    """The path of a POST that sent a token and got a new one (a refresh), if recorded."""
    for exchange in recording.http:
        sent = JWT.findall(exchange.request_body)
        got = JWT.findall(exchange.response_body)
        renewed = sent and got and set(got) - set(sent)
        if exchange.method == "POST" and renewed and "refresh" in exchange.path.lower():
            return exchange.path
    return None
