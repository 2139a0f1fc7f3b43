"""The frame parser: whole messages from any chunking, every violation classified, bounded."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsload.protocol.frames import FrameError, FrameParser, close_payload


def frame(payload: bytes, opcode: int = 0x1, fin: bool = True, mask: bool = False, rsv: int = 0):
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([(0x80 if mask else 0) | n])
    elif n < 65536:
        head += bytes([(0x80 if mask else 0) | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([(0x80 if mask else 0) | 127]) + n.to_bytes(8, "big")
    return head + (b"\0\0\0\0" if mask else b"") + payload


def feed_in_chunks(parser: FrameParser, data: bytes, cuts: list[int]):
    out, last = [], 0
    for cut in sorted(set(c % (len(data) + 1) for c in cuts)) + [len(data)]:
        out += parser.feed(data[last:cut])
        last = cut
    return out


texts = st.text(max_size=300)


@given(st.lists(texts, min_size=1, max_size=8), st.lists(st.integers(0, 10_000), max_size=12))
def test_messages_survive_any_chunking(messages, cuts):
    data = b"".join(frame(m.encode()) for m in messages)
    got = feed_in_chunks(FrameParser(), data, cuts)
    assert [(m.kind, m.data) for m in got] == [("text", m) for m in messages]


@given(texts, st.integers(1, 5), st.lists(st.integers(0, 2000), max_size=6))
def test_fragmented_messages_are_joined_with_control_frames_between(text, parts, cuts):
    raw = text.encode()
    size = max(1, len(raw) // parts)
    pieces = [raw[i : i + size] for i in range(0, len(raw), size)]
    pieces += [b""] * (2 - len(pieces))  # at least two fragments, the ping between them
    data = b""
    for i, piece in enumerate(pieces):
        data += frame(piece, 0x1 if i == 0 else 0x0, fin=i == len(pieces) - 1)
        if i == 0:
            data += frame(b"hi", 0x9)  # a ping may sit between fragments
    got = feed_in_chunks(FrameParser(), data, cuts)
    assert [(m.kind, m.data) for m in got] == [("ping", b"hi"), ("text", text)]


def test_lengths_of_every_size_class_parse():
    for n in (0, 125, 126, 65535, 65536, 70000):
        (msg,) = FrameParser().feed(frame(b"x" * n, 0x2))
        assert msg.kind == "binary" and len(msg.data) == n


@pytest.mark.parametrize(
    ("data", "reason", "code"),
    [
        (frame(b"hi", mask=True), "masked", 1002),
        (frame(b"hi", rsv=0x40), "reserved bits", 1002),
        (frame(b"x" * 200, 0x9), "control frame", 1002),
        (frame(b"hi", 0x0), "continuation", 1002),
        (frame(b"a", 0x1, fin=False) + frame(b"b", 0x1), "new message inside", 1002),
        (frame(b"\xff\xfe"), "not UTF-8", 1007),
        (frame(b"x", 0x3), "unknown data opcode", 1002),
        (frame(b"x", 0xB), "unknown control opcode", 1002),
    ],
)
def test_violations_are_classified_with_a_close_code(data, reason, code):
    with pytest.raises(FrameError, match=reason) as info:
        FrameParser().feed(data)
    assert info.value.close_code == code


def test_a_message_over_the_limit_is_refused_before_it_is_buffered():
    parser = FrameParser(max_message_bytes=1000)
    header_only = frame(b"x" * 5000)[:4]  # the length arrives long before the payload
    with pytest.raises(FrameError, match="over 1000 bytes") as info:
        parser.feed(header_only)
    assert info.value.close_code == 1009
    fragments = FrameParser(max_message_bytes=1000)
    with pytest.raises(FrameError, match="over 1000"):
        for _ in range(3):
            fragments.feed(frame(b"y" * 400, 0x1 if _ == 0 else 0x0, fin=False))


@settings(max_examples=500)
@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=5))
def test_garbage_never_crashes_and_never_grows_past_the_limit(data, cuts):
    parser = FrameParser(max_message_bytes=2048)
    try:
        feed_in_chunks(parser, data, cuts)
    except FrameError:
        return
    assert parser.buffered <= len(data) and parser.buffered <= 2048 + 10


def test_close_payloads():
    assert close_payload(b"") == (1005, "")
    assert close_payload((1008).to_bytes(2, "big") + b"Authentication failed") == (
        1008,
        "Authentication failed",
    )


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.floats(allow_nan=False)
        | st.text()
        | st.integers(-(2**63), 2**63 - 1),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
        max_leaves=20,
    )
)
def test_decoding_matches_the_standard_library(value):
    import json

    from wsload.protocol.frames import decode_json

    text = json.dumps(value)
    assert decode_json(text) == json.loads(text)


def test_what_orjson_refuses_but_json_reads_still_decodes():
    from wsload.protocol.frames import decode_json

    assert (
        decode_json('{"n": NaN, "big": 123456789012345678901234567890}')["big"]
        == 123456789012345678901234567890
    )
    with pytest.raises(ValueError):
        decode_json("{not json")


@given(st.binary(max_size=70_000), st.binary(min_size=4, max_size=4))
def test_client_frames_are_the_bytes_websocket_client_makes(payload, key):
    from websocket import ABNF

    from wsload.protocol.frames import client_frame

    reference = ABNF.create_frame(payload, ABNF.OPCODE_BINARY)
    reference.get_mask_key = lambda n: key
    assert client_frame(payload, 0x2, mask_key=key) == reference.format()


@given(st.binary(max_size=400), st.integers(0, 400))
def test_a_read_parsed_where_it_lies_agrees_with_one_parsed_from_the_buffer(payload, limit):
    """Reads on a frame boundary skip the buffer; errors included, the answer is the same."""

    def parse(parser: FrameParser, data: bytes):
        try:
            return [(m.kind, m.data) for m in parser.feed(data)]
        except FrameError as err:
            return ("error", err.close_code, err.reason)

    data = frame(payload)
    alone = parse(FrameParser(limit), data)
    general = FrameParser(limit)
    assert general.feed(data[:1]) == []  # a byte already buffered: the general path
    assert alone == parse(general, data[1:])
