"""Protocol profiles: everything backend-specific, read from TOML and validated up front.

A profile that loads is safe to run with: every key is known, every value has the right
type and range, the event grammar parses. Anything else raises a ``ProfileError`` that
names the file, the dotted key and what is wrong, so a typo never surfaces as thousands
of failed connections later. Whether the profile fits the backend's frames is a question
for the dry run (``wsload.protocol.dry_run``, ``wsload profile check``).

A profile file is merged over the shipped default profile (``profiles/default.toml``):
every section key it leaves out takes the default profile's value; a key it gives replaces
the default's value whole (a list, or a value table such as ``token.claims``). ``name``,
``description`` and ``[examples]`` are the file's own and never inherited; a file with its
own ``events.sequence`` does not inherit the default's event names either (``terminal``,
``error``, ``optional``, ``spans`` and ``stream.events`` start empty); the pong's and the
rejection's type fields, when not given, are the events' type field.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import types
import typing
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from wsload.config.stream import Stream, stream_problem
from wsload.config.transport import Transport, transport_problem
from wsload.errors import ConfigError
from wsload.protocol.grammar import Grammar, GrammarError

PROFILE_DIR = Path(__file__).resolve().parent.parent / "profiles"  # package data
CARRIERS = ("subprotocol", "header", "query", "cookie", "ticket", "connect")
TOKEN_ENCODINGS = ("raw", "base64url")
REFRESH_METHODS = ("reconnect", "in_band", "none")
OAUTH2_GRANTS = ("password", "client_credentials")
OAUTH2_BODIES = ("form", "json")
OAUTH2_CLIENT_AUTH = ("basic", "body", "none")
COMPRESSIONS = ("browser", "off")  # permessage-deflate offered as Chromium does, or not
ALGORITHMS = ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384")


class ProfileError(ConfigError):
    """A profile that cannot be used, with the file and key at fault."""

    def __init__(self, source: Path | str, key: str, problem: str) -> None:
        self.source = str(source)
        self.key = key
        self.problem = problem
        where = f"{source}: key '{key}'" if key else str(source)
        super().__init__(
            f"bad protocol profile {where}: {problem}",
            fix="correct the profile (see `wsload profile show default` for a complete one)",
        )


@dataclass(frozen=True)
class Endpoint:
    path: str = "/ws"
    origin: str = ""
    user_agent: str = ""
    compression: str = "browser"


@dataclass(frozen=True)
class Auth:
    carrier: str = "subprotocol"
    subprotocol: str = "jwt-auth"
    subprotocol_token_prefix: str = "jwt-auth."
    subprotocol_token_encoding: str = "raw"
    header_name: str = "Authorization"
    header_format: str = "Bearer {token}"
    query_param: str = "token"
    cookie_name: str = "access_token"
    ticket_path: str = "/api/websocket/ticket"
    ticket_param: str = "ticket"
    ticket_field: str = "ticket"
    login_path: str = "/auth/login"
    refresh_path: str = "/auth/refresh"
    refresh: str = "reconnect"
    # In-band refresh: the message that hands the server a new token on the open session.
    refresh_message: dict[str, Any] = field(
        default_factory=lambda: {"type": "token_refresh", "payload": {"token": "{token}"}}
    )


@dataclass(frozen=True)
class TokenSpec:
    algorithm: str = "HS256"
    issuer: str = ""
    audience: str = ""
    lifetime_s: float = 900.0
    subject_prefix: str = "wsload"
    claims: dict[str, Any] = field(default_factory=dict)
    # The claim naming the subject ("identifier" for Chainlit), and whether a unique ``jti``
    # is added: servers that build a user object from every claim refuse unknown ones.
    subject_claim: str = "sub"
    jti: bool = True


@dataclass(frozen=True)
class Ack:
    required: bool = True
    timeout_s: float = 10.0
    user_id_field: str = "data.user_id"
    match: tuple[dict[str, Any], ...] = ({"type": "connection_established"},)
    # The claim of a token wsload did not mint (login, file, oauth2) naming the user the ack
    # must name; the subject of a minted token is wsload's own.
    subject_claim: str = "sub"


@dataclass(frozen=True)
class Rejection:
    http_statuses: tuple[int, ...] = (401, 403)
    close_codes: tuple[int, ...] = (1008,)
    error_types: tuple[str, ...] = ("error_message",)
    error_code_field: str = "error_code"
    # Error codes that mean "not authenticated"; another code before the ack (a connection
    # limit, say) is named by the close that follows. Empty: every error frame is auth.
    auth_error_codes: tuple[str, ...] = ("AUTH_FAILED",)
    not_ready_close_codes: tuple[int, ...] = (1011, 1013)
    # Where an error frame has its type; "" (and a profile that leaves it out): the events'.
    type_field: str = ""


@dataclass(frozen=True)
class Chat:
    timeout_s: float = 60.0
    event_timeout_s: float = 30.0
    message: dict[str, Any] = field(
        default_factory=lambda: {
            "type": "user_message",
            "payload": {"content": "{content}", "thread_id": "{thread_id}"},
        }
    )
    emit: str = "client_message"  # socketio framing: the event the chat message is emitted as


@dataclass(frozen=True)
class Events:
    type_field: str = "type"
    user_id_field: str = "user_id"
    thread_id_field: str = "thread_id"
    run_id_field: str = "run_id"
    sequence: str = "agent_started agent_thinking+ (tool_executing tool_completed)* agent_completed"
    terminal: tuple[str, ...] = ("agent_completed",)
    error: tuple[str, ...] = ("agent_error", "agent_failed", "tool_error")
    optional: tuple[str, ...] = ()
    spans: tuple[tuple[str, ...], ...] = (("tool_executing", "tool_completed"),)
    span_id_field: str = ""  # a span's end closes the start with this field's value
    ignore: tuple[str, ...] = ("heartbeat", "pong")
    # Events carry a timestamp or id, so an identical frame within a turn is a resend.
    frames_are_unique: bool = True


@dataclass(frozen=True)
class Heartbeat:
    interval_s: float = 25.0
    pong_type: str = "pong"
    # Where the pong has its type; "" (and a profile that leaves it out): the events'.
    pong_type_field: str = ""
    server_heartbeat_type: str = "heartbeat"
    ping: dict[str, Any] = field(default_factory=lambda: {"type": "ping"})


@dataclass(frozen=True)
class OAuth2:
    """An identity provider's OAuth2 token endpoint (``--token-source oauth2``)."""

    endpoint: str = ""  # absolute URL of the token endpoint
    grant: str = "password"  # password (per user, --credentials) | client_credentials
    body: str = "form"  # form (RFC 6749) | json
    client_id: str = ""
    client_auth: str = "basic"  # basic (HTTP Basic) | body (client_secret_post) | none
    scope: str = ""
    params: dict[str, Any] = field(default_factory=dict)  # extra body fields (audience, ...)
    username_param: str = "username"
    password_param: str = "password"
    access_token_field: str = "access_token"  # dotted paths into the JSON answer
    refresh_token_field: str = "refresh_token"
    expires_in_field: str = "expires_in"


Frame = dict[str, Any] | str  # an example frame: a table, or the JSON text as sent


@dataclass(frozen=True)
class Examples:
    """Frames of the real backend for the dry run; empty ones are synthesised from the profile.

    Each frame is a table (sent as compact JSON) or a string holding the frame's text byte
    for byte, as captured in a browser's developer tools.
    """

    ack: Frame = field(default_factory=dict)
    turn: tuple[Frame, ...] = ()  # one whole turn, in the order the backend sends it
    next_turn: tuple[Frame, ...] = ()  # the turn after it on the same thread, if captured
    pong: Frame = field(default_factory=dict)
    rejection: Frame = field(default_factory=dict)  # the frame sent before closing a bad token
    rejection_close_code: int = 0  # the close that follows it; 0: rejection.close_codes[0]


@dataclass(frozen=True)
class Limits:
    max_message_bytes: int = 8192
    messages_per_minute: int = 30
    connections_per_user: int = 10


@dataclass(frozen=True)
class Profile:
    name: str = "unnamed"
    description: str = ""
    endpoint: Endpoint = field(default_factory=Endpoint)
    auth: Auth = field(default_factory=Auth)
    token: TokenSpec = field(default_factory=TokenSpec)
    ack: Ack = field(default_factory=Ack)
    rejection: Rejection = field(default_factory=Rejection)
    chat: Chat = field(default_factory=Chat)
    events: Events = field(default_factory=Events)
    stream: Stream = field(default_factory=Stream)
    heartbeat: Heartbeat = field(default_factory=Heartbeat)
    limits: Limits = field(default_factory=Limits)
    transport: Transport = field(default_factory=Transport)
    examples: Examples = field(default_factory=Examples)
    oauth2: OAuth2 = field(default_factory=OAuth2)
    source: str = "<built-in>"

    @cached_property
    def grammar(self) -> Grammar:
        """The compiled event grammar, compiled once per profile: sessions and trackers
        share it (one compiled per session cost 5 KB each and grew the trackers' caches)."""
        return Grammar(self.events.sequence)

    def summary(self) -> dict[str, Any]:
        """The profile as plain data, for run metadata."""
        return dataclasses.asdict(self)


def resolve_profile_path(name_or_path: str | Path) -> Path:
    """A profile given as a path, or as the name of a file in ``profiles/``."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists() or "/" in str(name_or_path):
        return path
    return PROFILE_DIR / f"{name_or_path}.toml"


DEFAULT_PROFILE = PROFILE_DIR / "default.toml"
OWN_KEYS = ("name", "description", "examples")  # a file's own: never taken from the default
# Lists of the grammar's event names: a file with its own events.sequence starts them empty.
GRAMMAR_NAME_KEYS = ("terminal", "error", "optional", "spans")
FILLED_KEYS = {  # left out, these take the value of another key of the same profile
    "heartbeat.pong_type_field": "events.type_field",
    "rejection.type_field": "events.type_field",
}


def load_profile(name_or_path: str | Path = "default") -> Profile:
    """Read a profile merged over the default one, type-check and validate it; raise
    ``ProfileError`` naming the key."""
    path = resolve_profile_path(name_or_path)
    raw = _read(path)
    merged = merge_over_default(raw, path)
    profile = _build(Profile, merged, "", path)
    profile = dataclasses.replace(
        profile,
        heartbeat=dataclasses.replace(
            profile.heartbeat,
            pong_type_field=profile.heartbeat.pong_type_field or profile.events.type_field,
        ),
        rejection=dataclasses.replace(
            profile.rejection,
            type_field=profile.rejection.type_field or profile.events.type_field,
        ),
        source=str(path),
    )
    _check(profile, path)
    return profile


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        known = ", ".join(sorted(p.stem for p in PROFILE_DIR.glob("*.toml")))
        raise ProfileError(path, "", f"no such file (profiles shipped: {known})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(path, "", f"cannot read it: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(path, "", f"not valid TOML: {exc}") from None


def merge_over_default(raw: dict[str, Any], path: Path) -> dict[str, Any]:
    """A profile file's tables over the default profile's: section by section, key by key.

    A key the file gives replaces the default's value whole; ``name``, ``description`` and
    ``examples`` are never inherited (a profile without a name is named after its file), nor
    are the default's event names when the file has a grammar of its own.
    """
    if path.resolve() == DEFAULT_PROFILE.resolve():
        return raw
    base = {k: v for k, v in _read(DEFAULT_PROFILE).items() if k not in OWN_KEYS}
    events = raw.get("events")
    if isinstance(events, dict) and "sequence" in events:
        # The default's event names mean nothing under another grammar.
        base["events"] = {**base["events"], **{k: [] for k in GRAMMAR_NAME_KEYS}}
        base["stream"] = {**base.get("stream", {}), "events": []}
    merged: dict[str, Any] = {**base, "name": path.stem}
    for key, value in raw.items():
        inherited = merged.get(key)
        if isinstance(value, dict) and isinstance(inherited, dict):
            merged[key] = {**inherited, **value}
        else:
            merged[key] = value
    return merged


def inherited_keys(path: Path | str) -> dict[str, str]:
    """Dotted keys a profile file leaves out, each with where its value comes from (the
    default profile, another key, or nothing); empty for the default profile itself."""
    path = Path(path)
    if not path.is_file() or path.resolve() == DEFAULT_PROFILE.resolve():
        return {}
    raw = _read(path)
    own_grammar = isinstance(raw.get("events"), dict) and "sequence" in raw["events"]
    out = {}
    for name, hint in typing.get_type_hints(Profile).items():
        if name in OWN_KEYS or not dataclasses.is_dataclass(hint):
            continue
        table = raw.get(name)
        for sub in dataclasses.fields(hint):
            if isinstance(table, dict) and sub.name in table:
                continue
            key = f"{name}.{sub.name}"
            if key in FILLED_KEYS:
                out[key] = f"from {FILLED_KEYS[key]}"
            elif own_grammar and (
                (name == "events" and sub.name in GRAMMAR_NAME_KEYS) or key == "stream.events"
            ):
                out[key] = "not inherited: the file has its own events.sequence"
            else:
                out[key] = "from default.toml"
    return out


# building --------------------------------------------------------------------------------
def _build(cls: type, table: dict[str, Any], prefix: str, source: Path) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.name != "source"}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ProfileError(source, dotted, f"unknown key{hint}")
        kwargs[key] = _coerce(value, hints[key], dotted, source)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str, source: Path) -> Any:
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ProfileError(source, key, f"must be a table, got {type(value).__name__}")
        return _build(hint, value, f"{key}.", source)
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, list):
            raise ProfileError(source, key, f"must be a list, got {_kind(value)}")
        item_hint = typing.get_args(hint)[0]
        return tuple(_coerce(v, item_hint, f"{key}[{i}]", source) for i, v in enumerate(value))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ProfileError(source, key, f"must be a table, got {_kind(value)}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ProfileError(source, key, f"must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ProfileError(source, key, f"must be a whole number, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ProfileError(source, key, f"must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ProfileError(source, key, f"must be a string, got {value!r}")
        return value
    if isinstance(hint, types.UnionType | typing._UnionGenericAlias):  # type: ignore[attr-defined]
        members = typing.get_args(hint)
        kinds = tuple(typing.get_origin(m) or m for m in members if m is not Any)
        if kinds and not isinstance(value, kinds):
            names = " or ".join(_KIND_NAMES.get(k, k.__name__) for k in kinds)
            raise ProfileError(source, key, f"must be {names}, got {_kind(value)}")
        return value
    raise ProfileError(source, key, f"unsupported type {hint}")  # pragma: no cover


_KIND_NAMES = {dict: "a table", list: "a list", str: "a string"}


def _kind(value: Any) -> str:
    return {dict: "a table", list: "a list", str: "a string"}.get(type(value), repr(value))


def _choice(source: Path, key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ProfileError(source, key, f"{value!r} is not one of {', '.join(allowed)}")


def _positive(source: Path, key: str, value: float) -> None:
    if value <= 0:
        raise ProfileError(source, key, f"must be greater than 0, got {value}")


def _contains_text(value: Any, needle: str) -> bool:
    if isinstance(value, str):
        return needle in value
    if isinstance(value, dict):
        return any(_contains_text(v, needle) for v in value.values())
    if isinstance(value, list):
        return any(_contains_text(v, needle) for v in value)
    return False


def _check(p: Profile, source: Path) -> None:
    """Cross-field validation that types alone cannot express."""
    if not p.endpoint.path.startswith("/"):
        raise ProfileError(source, "endpoint.path", f"must start with '/', got {p.endpoint.path!r}")
    _choice(source, "auth.carrier", p.auth.carrier, CARRIERS)
    _choice(source, "endpoint.compression", p.endpoint.compression, COMPRESSIONS)
    _choice(
        source,
        "auth.subprotocol_token_encoding",
        p.auth.subprotocol_token_encoding,
        TOKEN_ENCODINGS,
    )
    _choice(source, "auth.refresh", p.auth.refresh, REFRESH_METHODS)
    if p.auth.refresh == "in_band" and not _contains_text(p.auth.refresh_message, "{token}"):
        raise ProfileError(source, "auth.refresh_message", "must contain '{token}' somewhere")
    if "{token}" not in p.auth.header_format:
        raise ProfileError(source, "auth.header_format", "must contain '{token}'")
    _choice(source, "token.algorithm", p.token.algorithm, ALGORITHMS)
    _positive(source, "token.lifetime_s", p.token.lifetime_s)
    if not p.token.subject_claim:
        raise ProfileError(source, "token.subject_claim", "must name the claim of the subject")
    reserved = {"sub", "iat", "exp", "jti", "iss", "aud", "nbf", p.token.subject_claim}
    if clash := reserved & set(p.token.claims):
        raise ProfileError(
            source, f"token.claims.{sorted(clash)[0]}", "is set by wsload itself; remove it"
        )
    _positive(source, "ack.timeout_s", p.ack.timeout_s)
    if p.ack.required and not p.ack.match:
        raise ProfileError(source, "ack.match", "a required ack needs at least one match table")
    for i, match in enumerate(p.ack.match):
        if not match:
            raise ProfileError(source, f"ack.match[{i}]", "is empty; name at least one field")
    for code in (*p.rejection.close_codes, *p.rejection.not_ready_close_codes):
        if not 1000 <= code <= 4999:
            raise ProfileError(source, "rejection.close_codes", f"{code} is not a close code")
    for status in p.rejection.http_statuses:
        if not 300 <= status <= 599:
            raise ProfileError(source, "rejection.http_statuses", f"{status} is not an error")
    _positive(source, "chat.timeout_s", p.chat.timeout_s)
    _positive(source, "chat.event_timeout_s", p.chat.event_timeout_s)
    if not _contains_text(p.chat.message, "{content}"):
        raise ProfileError(source, "chat.message", "must contain '{content}' somewhere")
    try:
        grammar = p.grammar
    except GrammarError as exc:
        raise ProfileError(source, "events.sequence", str(exc)) from None
    for name in p.events.terminal:
        if name not in grammar.names:
            raise ProfileError(
                source, "events.terminal", f"{name!r} does not appear in events.sequence"
            )
    if not p.events.terminal:
        raise ProfileError(source, "events.terminal", "name at least one terminal event")
    for i, span in enumerate(p.events.spans):
        if len(span) != 2 or any(name not in grammar.names for name in span):
            raise ProfileError(
                source, f"events.spans[{i}]", "must be [start, end], both in events.sequence"
            )
    overlap = grammar.names & (set(p.events.optional) | set(p.events.ignore))
    if overlap:
        raise ProfileError(
            source,
            "events.optional",
            f"{sorted(overlap)[0]!r} is in events.sequence; an event is either part of the "
            "grammar or optional/ignored, not both",
        )
    if problem := stream_problem(p.stream):
        raise ProfileError(source, *problem)
    if ignored := sorted(set(p.stream.events) & set(p.events.ignore)):
        raise ProfileError(
            source, "stream.events", f"{ignored[0]!r} is in events.ignore, so never seen in a turn"
        )
    _positive(source, "heartbeat.interval_s", p.heartbeat.interval_s)
    if not p.heartbeat.pong_type_field:
        raise ProfileError(source, "heartbeat.pong_type_field", "must name a field")
    if not p.rejection.type_field:
        raise ProfileError(source, "rejection.type_field", "must name a field")
    code = p.examples.rejection_close_code
    if code and not 1000 <= code <= 4999:
        raise ProfileError(source, "examples.rejection_close_code", f"{code} is not a close code")
    if problem := transport_problem(p.transport, p.auth.carrier, p.chat.emit):
        raise ProfileError(source, *problem)
    _positive(source, "limits.max_message_bytes", p.limits.max_message_bytes)
    _positive(source, "limits.connections_per_user", p.limits.connections_per_user)
    _choice(source, "oauth2.grant", p.oauth2.grant, OAUTH2_GRANTS)
    _choice(source, "oauth2.body", p.oauth2.body, OAUTH2_BODIES)
    _choice(source, "oauth2.client_auth", p.oauth2.client_auth, OAUTH2_CLIENT_AUTH)
    if p.oauth2.endpoint and not p.oauth2.endpoint.startswith(("http://", "https://")):
        raise ProfileError(source, "oauth2.endpoint", "must be an http:// or https:// URL")


# warnings at load start --------------------------------------------------------------------
