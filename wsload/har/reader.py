"""A DevTools HAR read into what the inference needs: WebSocket sessions and HTTP requests.

Chrome's "Save all as HAR with content" writes each WebSocket as an entry whose response is
the 101 and whose ``_webSocketMessages`` hold the frames (``type`` send/receive, ``time`` in
epoch seconds, ``opcode``, ``data``). Everything else in ``log.entries`` is an HTTP request
(a login, a ticket, Engine.IO long-polling). A file that cannot be used fails here with one
message saying what is wrong and how to export it again.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from wsload.errors import ConfigError

EXPORT_HINT = (
    "in Chrome's developer tools, Network tab, reload, use the product, then right-click "
    "the request list and 'Save all as HAR with content'"
)


@dataclass(frozen=True)
class Frame:
    """One WebSocket message as DevTools recorded it."""

    sent: bool  # True: the page sent it; False: the server did
    time: float  # epoch seconds
    opcode: int  # 1 text, 2 binary
    data: str


@dataclass(frozen=True)
class HttpExchange:
    """One HTTP request of the recording and its answer."""

    method: str
    url: str
    request_headers: tuple[tuple[str, str], ...]
    request_body: str
    status: int
    response_headers: tuple[tuple[str, str], ...]
    response_body: str
    started: str  # ISO time, to order requests against WebSocket sessions

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.url).query, keep_blank_values=True))


@dataclass(frozen=True)
class WebSocketSession:
    """One WebSocket entry: its upgrade request, the server's answer and its frames."""

    url: str
    request_headers: tuple[tuple[str, str], ...]
    status: int  # 101 when upgraded; a refused upgrade keeps its 4xx
    response_headers: tuple[tuple[str, str], ...]
    frames: tuple[Frame, ...]
    started: str
    has_messages: bool  # the entry carried a _webSocketMessages list at all

    @property
    def path(self) -> str:
        return urlsplit(self.url).path or "/"

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.url).query, keep_blank_values=True))


@dataclass(frozen=True)
class Recording:
    """What a HAR holds, in recorded order."""

    source: str
    sessions: tuple[WebSocketSession, ...]
    http: tuple[HttpExchange, ...] = field(default=())


def header(headers: tuple[tuple[str, str], ...], name: str) -> str | None:
    """A header's value (several joined by ', '), or None."""
    values = [v for n, v in headers if n.lower() == name.lower()]
    return ", ".join(values) if values else None


def read_har(path: str | Path) -> Recording:
    """Read a HAR file; raise ``ConfigError`` when it is not one, is cut short, holds no
    WebSocket, or holds WebSockets without their frames."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file", fix="give the path of a .har file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc})", fix=EXPORT_HINT) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.rstrip()) - 1 or "Unterminated" in exc.msg:
            raise ConfigError(
                f"{path}: the file ends in the middle of its JSON (line {exc.lineno}): it is "
                "truncated, e.g. the export or a copy was cut short",
                fix="export the HAR again and make sure the whole file is saved; " + EXPORT_HINT,
            ) from None
        raise ConfigError(
            f"{path}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
            fix="give a HAR file as the browser exports it; " + EXPORT_HINT,
        ) from None
    entries = _entries(document, path)
    sessions = []
    http = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        if _is_websocket(entry):
            sessions.append(_session(entry))
        else:
            http.append(_exchange(entry))
    if not sessions:
        raise ConfigError(
            f"{path}: the recording holds no WebSocket ({len(http)} HTTP requests, none "
            "upgraded): nothing to make a WebSocket profile from",
            fix="record again with the developer tools open before the page opens its "
            "WebSocket (reload the page), then send a chat message; " + EXPORT_HINT,
        )
    if not any(s.frames for s in sessions):
        raise ConfigError(
            f"{path}: its {len(sessions)} WebSocket "
            f"entr{'y has' if len(sessions) == 1 else 'ies have'} no messages: the HAR was "
            "exported without content (or the messages were "
            "cleared), so the frames the profile is made from are missing",
            fix="export with 'Save all as HAR with content' (not 'Save all as HAR (sanitized)' "
            "or 'without content'), after sending at least one chat message",
        )
    return Recording(source=str(path), sessions=tuple(sessions), http=tuple(http))


def _entries(document: Any, path: Path) -> list[Any]:
    log = document.get("log") if isinstance(document, dict) else None
    entries = log.get("entries") if isinstance(log, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(
            f"{path}: JSON, but not a HAR (no log.entries list)",
            fix="give a HAR file as the browser exports it; " + EXPORT_HINT,
        )
    return entries


def _is_websocket(entry: dict[str, Any]) -> bool:
    if entry.get("_resourceType") == "websocket" or "_webSocketMessages" in entry:
        return True
    url = str(entry.get("request", {}).get("url", ""))
    return url.startswith(("ws://", "wss://"))


def _headers(raw: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, list):
        return ()
    return tuple(
        (str(h.get("name", "")), str(h.get("value", ""))) for h in raw if isinstance(h, dict)
    )


def _session(entry: dict[str, Any]) -> WebSocketSession:
    request = entry.get("request") or {}
    response = entry.get("response") or {}
    raw = entry.get("_webSocketMessages")
    frames = []
    for message in raw if isinstance(raw, list) else ():
        if not isinstance(message, dict) or message.get("type") not in ("send", "receive"):
            continue
        frames.append(
            Frame(
                sent=message["type"] == "send",
                time=float(message.get("time") or 0.0),
                opcode=int(message.get("opcode") or 1),
                data=str(message.get("data", "")),
            )
        )
    return WebSocketSession(
        url=str(request.get("url", "")),
        request_headers=_headers(request.get("headers")),
        status=int(response.get("status") or 0),
        response_headers=_headers(response.get("headers")),
        frames=tuple(frames),
        started=str(entry.get("startedDateTime", "")),
        has_messages=isinstance(raw, list),
    )


def _exchange(entry: dict[str, Any]) -> HttpExchange:
    request = entry.get("request") or {}
    response = entry.get("response") or {}
    post = request.get("postData") or {}
    content = response.get("content") or {}
    body = str(content.get("text", "") or "")
    if content.get("encoding") == "base64":
        try:
            body = base64.b64decode(body).decode("utf-8", "replace")
        except ValueError:
            body = ""
    return HttpExchange(
        method=str(request.get("method", "GET")).upper(),
        url=str(request.get("url", "")),
        request_headers=_headers(request.get("headers")),
        request_body=str(post.get("text", "") or "") if isinstance(post, dict) else "",
        status=int(response.get("status") or 0),
        response_headers=_headers(response.get("headers")),
        response_body=body,
        started=str(entry.get("startedDateTime", "")),
    )
