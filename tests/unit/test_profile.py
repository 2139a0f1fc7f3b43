"""Profiles load when right and, when wrong, name the file, the key and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from wsload.config.profile import ProfileError, load_profile
from wsload.config.templates import fill_template, get_field

DEFAULT = Path(__file__).resolve().parents[2] / "wsload" / "profiles" / "default.toml"


def test_the_default_profile_speaks_the_reference_protocol():
    p = load_profile()
    assert p.auth.carrier == "subprotocol" and p.auth.subprotocol_token_prefix == "jwt-auth."
    assert p.token.issuer == "netra-auth-service" and p.token.audience == "netra-platform"
    assert p.token.claims["token_type"] == "access"
    assert {"type": "connection_established"} in p.ack.match
    assert p.grammar.matches(
        ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"]
    )
    assert p.chat.message["type"] == "user_message" and p.heartbeat.ping == {"type": "ping"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("edit", "key", "problem"),
    [
        (('carrier = "subprotocol"', 'carrier = "pigeon"'), "auth.carrier", "not one of"),
        (("[auth]", "[auth]\ncarier = 'x'"), "auth.carier", "did you mean 'auth.carrier'"),
        (("lifetime_s = 900", "lifetime_s = 'long'"), "token.lifetime_s", "must be a number"),
        (("lifetime_s = 900", "lifetime_s = -1"), "token.lifetime_s", "greater than 0"),
        (("timeout_s = 10.0", "timeout_s = 0"), "ack.timeout_s", "greater than 0"),
        (("required = true", "required = 'yes'"), "ack.required", "true or false"),
        (("close_codes = [1008]", "close_codes = [42]"), "rejection.close_codes", "close code"),
        (('path = "/ws"', 'path = "ws"'), "endpoint.path", "must start with '/'"),
        (
            ("(tool_executing tool_completed)*", "(tool_executing tool_completed"),
            "events.sequence",
            "missing ')'",
        ),
        (
            ('terminal = ["agent_completed"]', 'terminal = ["done"]'),
            "events.terminal",
            "does not appear",
        ),
        (
            ('type = "access"\n', 'type = "access"\nsub = "x"\n'),
            "token.claims.sub",
            "set by wsload",
        ),
        (('content = "{content}"', 'content = "hi"'), "chat.message", "{content}"),
    ],
)
def test_a_bad_profile_names_file_key_and_problem(tmp_path, edit, key, problem):
    text = DEFAULT.read_text()
    assert edit[0] in text
    path = write(tmp_path, text.replace(edit[0], edit[1], 1))
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    message = str(info.value)
    assert str(path) in message and f"'{key}'" in message and problem in message


def test_a_missing_profile_lists_the_shipped_ones(tmp_path):
    with pytest.raises(ProfileError, match=r"(?s)no such file.*default"):
        load_profile(tmp_path / "absent.toml")


def test_invalid_toml_is_reported_with_its_position(tmp_path):
    with pytest.raises(ProfileError, match=r"(?s)not valid TOML.*line 1"):
        load_profile(write(tmp_path, "name = \n"))


def test_a_minimal_profile_takes_defaults_for_the_rest(tmp_path):
    p = load_profile(write(tmp_path, 'name = "tiny"\n[endpoint]\npath = "/chat"\n'))
    assert p.endpoint.path == "/chat" and p.auth.carrier == "subprotocol"


def test_templates_are_filled_inside_nested_json():
    message = fill_template(
        {"a": ["{content}", {"t": "{thread_id}"}], "n": 1}, {"content": 'q"', "thread_id": "t"}
    )
    assert message == {"a": ['q"', {"t": "t"}], "n": 1}
    assert get_field({"data": {"user_id": "u"}}, "data.user_id") == "u"
    assert get_field({"data": "x"}, "data.user_id") is None


@pytest.mark.parametrize(
    "content", ["plain", 'quo"te \\ back', "emoji \U0001f600 and \u2063", "{thread_id}"]
)
def test_the_pre_serialised_template_renders_what_fill_template_gives(content):
    import json

    from wsload.config.templates import JsonTemplate

    template = load_profile().chat.message
    rendered = JsonTemplate(template, ("content", "thread_id")).render(
        content=content, thread_id="t-1"
    )
    assert json.loads(rendered) == fill_template(template, {"thread_id": "t-1", "content": content})


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.characters(blacklist_categories=())),  # lone surrogates too
    st.text(alphabet=st.characters(blacklist_categories=("Cs",))),
)
def test_the_template_renders_exactly_the_standard_librarys_json(content, thread_id):
    import json

    from wsload.config.templates import JsonTemplate

    template = load_profile().chat.message
    rendered = JsonTemplate(template, ("content", "thread_id")).render(
        content=content, thread_id=thread_id
    )
    filled = fill_template(template, {"thread_id": thread_id, "content": content})
    assert rendered == json.dumps(filled, separators=(",", ":"), ensure_ascii=False)


# wsload profile show: the effective profile as TOML ------------------------------------------
DATA = Path(__file__).resolve().parents[1] / "data"


def shown_and_loaded_back(tmp_path: Path, profile):
    from wsload.config.profile_toml import profile_to_toml

    text = profile_to_toml(profile)
    path = tmp_path / "shown.toml"
    path.write_text(text, encoding="utf-8")
    return text, load_profile(path)


@pytest.mark.parametrize(
    "source",
    [DEFAULT, DATA / "other_backend.toml", DATA / "rs256.toml", DATA / "no_refresh.toml"],
)
def test_a_shown_profile_loads_back_to_the_same_profile(tmp_path, source):
    import dataclasses

    profile = load_profile(source)
    text, again = shown_and_loaded_back(tmp_path, profile)
    assert dataclasses.replace(again, source=profile.source) == profile
    assert text.startswith(f"# effective protocol profile, loaded from {profile.source}\n")
    assert "\n[auth]\n" in text and "\nsource" not in text


def test_show_fills_in_the_keys_a_partial_profile_leaves_out(tmp_path):
    import dataclasses

    partial = load_profile(write(tmp_path, 'name = "mini"\n[auth]\ncarrier = "query"\n'))
    text, again = shown_and_loaded_back(tmp_path, partial)
    assert dataclasses.replace(again, source=partial.source) == partial
    assert 'carrier = "query"' in text and "query_param = " in text
    assert "\n[limits]\nmax_message_bytes = 8192\n" in text


@settings(max_examples=60, deadline=None)
@given(
    text=st.text(st.characters(blacklist_categories=("Cs",)), max_size=30),
    key=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12),
    number=st.floats(allow_nan=False, allow_infinity=True) | st.integers(-(2**63), 2**63 - 1),
)
# A trailing newline passes a regex ending in `$`: such keys and texts must still be quoted.
@example(text='say "hi"\n', key="0\n", number=0)
def test_any_string_key_or_number_survives_the_round_trip(tmp_path_factory, text, key, number):
    import dataclasses

    from wsload.config.profile import Profile, TokenSpec

    if key in {"sub", "iat", "exp", "jti", "iss", "aud", "nbf"}:
        key = "x" + key
    profile = dataclasses.replace(
        load_profile(),
        description=text,
        token=TokenSpec(claims={key: [text, number, {key: True}]}),
    )
    assert isinstance(profile, Profile)
    _, again = shown_and_loaded_back(tmp_path_factory.mktemp("p"), profile)
    assert again.description == text and again.token.claims == profile.token.claims


# partial profiles: merged over the default one ----------------------------------------------
def test_a_partial_profile_is_merged_over_the_default_one(tmp_path):
    default = load_profile()
    p = load_profile(write(tmp_path, '[auth]\ncarrier = "query"\n[token.claims]\nrole = "x"\n'))
    assert p.auth.carrier == "query" and p.auth.query_param == default.auth.query_param
    assert p.token.issuer == "netra-auth-service" == default.token.issuer  # inherited
    assert p.token.claims == {"role": "x"}  # a value table given replaces the default's whole
    assert p.ack.match == default.ack.match and p.events == default.events
    assert p.name == "p" and p.description == ""  # its own: named after its file
    assert p.examples.turn == () and default.examples.turn  # examples are never inherited


def test_a_profile_with_its_own_grammar_does_not_inherit_the_defaults_event_names(tmp_path):
    path = write(tmp_path, '[events]\nsequence = "go step+ end"\nterminal = ["end"]\n')
    p = load_profile(path)
    assert (p.events.error, p.events.optional, p.events.spans) == ((), (), ())
    assert p.events.ignore == load_profile().events.ignore
    with pytest.raises(ProfileError, match="name at least one terminal event"):
        load_profile(write(tmp_path, '[events]\nsequence = "go step+ end"\n'))


def test_the_pong_and_rejection_type_fields_follow_the_events_unless_given(tmp_path):
    p = load_profile(write(tmp_path, '[events]\ntype_field = "event"\n'))
    assert p.heartbeat.pong_type_field == "event" == p.rejection.type_field
    p = load_profile(
        write(
            tmp_path,
            '[events]\ntype_field = "event"\n[heartbeat]\npong_type_field = "type"\n'
            '[rejection]\ntype_field = "kind"\n',
        )
    )
    assert (p.heartbeat.pong_type_field, p.rejection.type_field) == ("type", "kind")


def test_an_example_frame_must_be_a_table_or_its_text(tmp_path):
    with pytest.raises(ProfileError, match=r"'examples.turn\[0\]'.*a table or a string"):
        load_profile(write(tmp_path, "[examples]\nturn = [1]\n"))


def test_show_marks_the_keys_a_partial_profile_takes_from_elsewhere(tmp_path):
    from wsload.config.profile import inherited_keys
    from wsload.config.profile_toml import profile_to_toml

    path = write(tmp_path, '[events]\ntype_field = "event"\nsequence = "a b"\nterminal = ["b"]\n')
    text = profile_to_toml(load_profile(path), inherited_keys(path))
    assert 'issuer = "netra-auth-service"  # from default.toml' in text
    assert 'pong_type_field = "event"  # from events.type_field' in text
    assert "spans = []  # not inherited: the file has its own events.sequence" in text
    assert '\ntype_field = "event"\n' in text  # given: no comment
    assert inherited_keys(DEFAULT) == {}


def test_a_value_that_reads_like_a_placeholder_is_not_filled_in_again():
    template = {"payload": {"content": "{content}", "thread_id": "{thread_id}"}}
    filled = fill_template(template, {"thread_id": "{content}", "content": ""})
    assert filled == {"payload": {"content": "", "thread_id": "{content}"}}
