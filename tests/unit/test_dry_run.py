"""The dry run of a profile: example frames through the real session and tracker.

Each case is a profile that loads but cannot work with its backend's frames, the finding
that names the key to change, and the same profile with that key changed passing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from wsload.config.profile import load_profile
from wsload.config.profile_warnings import isolation_gap, profile_warnings
from wsload.protocol.dry_run import ERROR, WARNING, dry_run
from wsload.protocol.dry_run_frames import shortest_turn, with_repeats
from wsload.protocol.grammar import Grammar

DATA = Path(__file__).resolve().parents[1] / "data"

# A streaming backend: events typed by "event", a repeatable `delta` whose frames carry
# nothing that differs, the pong and the error frame typed by "type".
STREAM = """
name = "stream"
[ack]
user_id_field = "user"
[[ack.match]]
event = "ready"
[rejection]
error_types = ["error"]
error_code_field = "code"
auth_error_codes = ["unauthorized"]
[events]
type_field = "event"
user_id_field = "user"
thread_id_field = "thread"
run_id_field = "run"
sequence = "start delta+ done"
terminal = ["done"]
{events_extra}
[heartbeat]
{heartbeat_extra}
[examples]
ack = {{ event = "ready", user = "u1" }}
turn = [
  {{ event = "start", user = "u1", thread = "t1", run = "r1" }},
  {{ event = "delta", user = "u1", thread = "t1", run = "r1", text = "hi" }},
  {{ event = "delta", user = "u1", thread = "t1", run = "r1", text = "hi" }},
  {{ event = "done", user = "u1", thread = "t1", run = "r1" }},
]
pong = {{ type = "pong" }}
rejection = {{ type = "error", code = "unauthorized" }}
rejection_close_code = 1008
"""
FIXED_EVENTS = "frames_are_unique = false"
FIXED_HEARTBEAT = 'pong_type_field = "type"'


def stream(tmp_path: Path, events: str = FIXED_EVENTS, heartbeat: str = FIXED_HEARTBEAT, **kw):
    text = STREAM.format(events_extra=events, heartbeat_extra=heartbeat)
    text += "".join(f"{k} = {v}\n" for k, v in kw.items())
    path = tmp_path / "stream.toml"
    path.write_text(text.replace("[rejection]\n", '[rejection]\ntype_field = "type"\n', 1))
    return load_profile(path)


def keys(report, level=ERROR) -> list[str]:
    return [f.key for f in report.findings if f.level == level]


def test_the_fixed_streaming_profile_passes_its_dry_run(tmp_path):
    report = dry_run(stream(tmp_path))
    assert report.findings == (), [str(f) for f in report.findings]
    assert any(line.startswith("turn (example): start delta delta done") for line in report.fed)


def test_identical_repeated_frames_under_frames_are_unique_fail_every_turn(tmp_path):
    report = dry_run(stream(tmp_path, events=""))  # frames_are_unique = true, the default's
    (finding,) = report.errors
    assert finding.key == "events.frames_are_unique"
    assert "two identical `delta` frames a sequence_duplicate" in finding.problem
    assert "set it false" in finding.fix


def test_a_pong_typed_in_another_field_is_found_and_named(tmp_path):
    report = dry_run(stream(tmp_path, heartbeat=""))  # pong_type_field = events.type_field
    (finding,) = report.errors
    assert finding.key == "heartbeat.pong_type_field"
    assert "'type'" in finding.problem and "pong_timeout" in finding.problem
    assert finding.fix == 'set heartbeat.pong_type_field = "type"'


def test_a_pong_with_another_type_name_is_found(tmp_path):
    profile = stream(tmp_path, heartbeat='pong_type_field = "type"\npong_type = "pong!"')
    (finding,) = dry_run(profile).errors
    assert (
        finding.key == "heartbeat.pong_type" and finding.fix == 'set heartbeat.pong_type = "pong"'
    )


def test_an_error_frame_typed_in_another_field_is_found_and_named(tmp_path):
    text = STREAM.format(events_extra=FIXED_EVENTS, heartbeat_extra=FIXED_HEARTBEAT)
    path = tmp_path / "p.toml"
    path.write_text(text)  # rejection.type_field left out: the events' "event"
    profile = load_profile(path)
    assert profile.rejection.type_field == "event"
    (finding,) = dry_run(profile).errors
    assert finding.key == "rejection.type_field"
    assert finding.fix == 'set rejection.type_field = "type"'


def test_an_error_code_that_is_not_an_auth_code_is_found(tmp_path):
    profile = stream(tmp_path)
    path = Path(profile.source)
    path.write_text(path.read_text().replace('code = "unauthorized" }', 'code = "nope" }'))
    (finding,) = dry_run(load_profile(path)).errors
    assert finding.key == "rejection.auth_error_codes" and "closed_1008" in finding.problem


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (('ack = { event = "ready", user = "u1" }', 'ack = { event = "hello", user = "u1" }'),
         "ack.match"),
        (('ack = { event = "ready", user = "u1" }', 'ack = { event = "ready", id = "u1" }'),
         "ack.user_id_field"),
        (('{ event = "done",', '{ event = "finished",'), "events.optional"),
        (('text = "hi" },\n  { event = "delta"', 'text = "hi" },\n  { kind = "delta"'),
         "events.type_field"),
        (('sequence = "start delta+ done"', 'sequence = "start delta done"'), "events.sequence"),
        (('sequence = "start delta+ done"', 'sequence = "delta+ start done"'), "events.sequence"),
    ],
)  # fmt: skip
def test_each_way_the_example_frames_fail_names_its_key(tmp_path, edit, key):
    path = Path(stream(tmp_path).source)
    text = path.read_text()
    assert edit[0] in text
    path.write_text(text.replace(edit[0], edit[1], 1))
    report = dry_run(load_profile(path))
    assert key in keys(report), [str(f) for f in report.findings]


def test_identical_frames_without_run_ids_starve_the_next_turn(tmp_path):
    path = Path(stream(tmp_path, events="").source)
    text = path.read_text().replace(', run = "r1"', "").replace(', text = "hi"', "")
    text = text.replace("[events]\n", "[events]\n", 1)
    # one delta a turn, so within a turn nothing repeats; the next turn is the same bytes
    text = text.replace('  { event = "delta", user = "u1", thread = "t1" },\n', "", 1)
    path.write_text(text)
    report = dry_run(load_profile(path))
    assert keys(report) == ["events.frames_are_unique"]
    assert "every second turn" in report.errors[0].problem
    with_next = text + (
        'next_turn = [{ event = "start", user = "u1", thread = "t1", ts = 2 },'
        ' { event = "delta", user = "u1", thread = "t1", ts = 3 },'
        ' { event = "done", user = "u1", thread = "t1", ts = 4 }]\n'
    )
    path.write_text(with_next)
    assert dry_run(load_profile(path)).findings == ()


def test_synthesised_frames_only_warn_about_what_the_profile_assumes(tmp_path):
    path = tmp_path / "bare.toml"
    path.write_text('[events]\ntype_field = "type"\n')  # the default's grammar, no examples
    report = dry_run(load_profile(path))
    assert report.errors == ()
    assert keys(report, WARNING) == ["events.frames_are_unique"]
    assert {"ack", "turn", "pong", "rejection"} <= set(report.synthesised)
    fixed = tmp_path / "fixed.toml"
    fixed.write_text("[events]\nframes_are_unique = false\n")
    assert dry_run(load_profile(fixed)).findings == ()


def test_a_grammar_whose_turns_never_reach_a_terminal_event_is_an_error(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('[events]\nsequence = "a b? c"\nterminal = ["b"]\nframes_are_unique = false\n')
    assert "events.terminal" in keys(dry_run(load_profile(path)))


def test_the_synthesised_turn_is_the_shortest_with_repeatables_twice():
    grammar = Grammar("agent_started agent_thinking+ (tool_executing tool_completed)* done")
    names = shortest_turn(grammar, ("done",))
    assert names == ["agent_started", "agent_thinking", "done"]
    assert with_repeats(grammar, names) == [
        "agent_started",
        "agent_thinking",
        "agent_thinking",
        "done",
    ]
    assert shortest_turn(Grammar("a (b | c)"), ("c",)) == ["a", "c"]
    assert shortest_turn(Grammar("a b"), ("x",)) is None


@pytest.mark.parametrize(
    "source",
    ["default", DATA / "other_backend.toml", DATA / "rs256.toml", DATA / "no_refresh.toml"],
)
def test_every_shipped_and_test_profile_passes_its_dry_run(source):
    assert dry_run(load_profile(source)).errors == ()


def test_the_default_profile_is_checked_on_real_frames():
    report = dry_run(load_profile())
    assert report.findings == () and "turn" not in report.synthesised


# isolation: say so when it is off ------------------------------------------------------------
def test_isolation_off_is_said_when_the_example_events_carry_no_ids(tmp_path):
    path = Path(stream(tmp_path).source)
    text = path.read_text().replace(' user = "u1", thread = "t1",', "")
    path.write_text(text)
    profile = load_profile(path)
    (warning,) = profile_warnings(profile)
    assert "isolation checks by user ('user') and thread ('thread') are off" in warning
    assert "events.user_id_field" in warning and "not caught" in warning
    assert "events.user_id_field" in keys(dry_run(profile), WARNING)


def test_isolation_off_is_said_when_the_profile_names_no_field(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('[events]\nuser_id_field = ""\n')
    (warning,) = profile_warnings(load_profile(path))
    assert "isolation checks by user (no field set) are off" in warning
    assert "the profile names no field for it" in warning


def test_no_isolation_warning_when_events_carry_their_ids(tmp_path):
    assert profile_warnings(load_profile()) == []
    assert profile_warnings(stream(tmp_path)) == []
    bare = tmp_path / "bare.toml"
    bare.write_text('name = "bare"\n')
    assert profile_warnings(load_profile(bare)) == []  # nothing known: a run learns it


def test_the_first_event_of_a_run_tells_whether_isolation_is_on():
    profile = load_profile()
    assert (
        isolation_gap(profile, {"type": "agent_started", "user_id": "u", "thread_id": "t"}) is None
    )
    gap = isolation_gap(profile, {"type": "agent_started", "run_id": "r"})
    assert gap is not None and "'user_id'" in gap and "'thread_id'" in gap


def test_the_documented_streaming_profile_passes_its_dry_run(tmp_path):
    import re

    doc = (Path(__file__).resolve().parents[2] / "docs" / "profiles.md").read_text()
    toml = re.search(r"## Example: a streaming backend.*?```toml\n(.*?)```", doc, re.S)
    assert toml is not None
    path = tmp_path / "streaming.toml"
    path.write_text(toml.group(1))
    profile = load_profile(path)
    assert profile.token.issuer == "" and profile.token.claims == {}
    assert dry_run(profile).findings == () and profile_warnings(profile) == []
