"""permessage-deflate under the session: Chromium's offer, RFC 7692's negotiation rules, and
frames inflated and deflated by the websockets package's implementation (its server side
is the peer here), whole or fragmented, bounded like any message."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.headers import parse_extension

from wsload import taxonomy
from wsload.protocol.deflate import CHROMIUM_OFFER, negotiate, offer
from wsload.protocol.frames import FrameError, FrameParser
from wsload.protocol.upgrade import HandshakeError, build_request, parse_ws_url
from wsload.run.batch import Batch
from wsload.run.records import ConnectionAttempt, Who
from wsload.run.wire import decode, encode, records_of

OFFERED = (("Sec-WebSocket-Extensions", CHROMIUM_OFFER),)


def server_side(answer: str | None = None, **factory):
    """A websockets server's extension for Chromium's offer, and the header it answers."""
    params = parse_extension(CHROMIUM_OFFER)[0][1]
    response, extension = ServerPerMessageDeflateFactory(**factory).process_request_params(
        params, []
    )
    words = ["permessage-deflate", *(n if v is None else f"{n}={v}" for n, v in response)]
    return extension, answer or "; ".join(words)


def wire(frame: Frame) -> bytes:
    """A server's (unmasked) frame as bytes, RSV1 as the extension set it."""
    head = (0x80 if frame.fin else 0) | (0x40 if frame.rsv1 else 0) | frame.opcode
    n = len(frame.data)
    if n < 126:
        size = bytes([n])
    elif n < 65536:
        size = bytes([126]) + n.to_bytes(2, "big")
    else:
        size = bytes([127]) + n.to_bytes(8, "big")
    return bytes([head]) + size + bytes(frame.data)


def server_frame(extension, text: str, fin: bool = True) -> bytes:
    """The bytes of a server frame carrying ``text`` deflated by the server."""
    return wire(extension.encode(Frame(Opcode.TEXT, text.encode(), fin=fin)))


def test_the_offer_is_chromiums_and_goes_between_the_key_and_the_subprotocols():
    assert offer("browser") == "permessage-deflate; client_max_window_bits"
    assert offer("off") is None
    request = build_request(
        parse_ws_url("ws://h/ws"), subprotocols=("jwt-auth",), extensions=offer("browser")
    )
    names = [name for name, _ in request.headers]
    key = names.index("Sec-WebSocket-Key")
    assert names[key + 1 : key + 3] == ["Sec-WebSocket-Extensions", "Sec-WebSocket-Protocol"]
    off = build_request(parse_ws_url("ws://h/ws"), extensions=offer("off"))
    assert "Sec-WebSocket-Extensions" not in dict(off.headers)


def test_a_server_that_answers_no_extension_gives_an_uncompressed_session():
    assert negotiate(OFFERED, None) is None
    assert negotiate(OFFERED, "") is None


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ("permessage-deflate; client_max_window_bits=8", "parameters refused"),
        ("permessage-deflate; server_max_window_bits=20", "parameters refused"),
        ("permessage-deflate; mystery", "parameters refused"),
        ("permessage-deflate, permessage-deflate", "only permessage-deflate"),
        ("x-webkit-deflate-frame", "only permessage-deflate"),
        ("permessage-deflate; =", "malformed"),
    ],
)
def test_an_answer_rfc_7692_forbids_fails_the_upgrade(answer, said):
    with pytest.raises(HandshakeError) as info:
        negotiate(OFFERED, answer)
    assert info.value.failure == taxonomy.INVALID_HTTP and said in info.value.detail


def test_an_extension_nobody_offered_fails_the_upgrade():
    with pytest.raises(HandshakeError, match="offered none"):
        negotiate((), "permessage-deflate")


@settings(max_examples=60, deadline=None)
@given(
    texts=st.lists(st.text(max_size=3000), min_size=1, max_size=4),
    takeover=st.booleans(),
    bits=st.integers(9, 15),
    cuts=st.lists(st.integers(0, 10_000), max_size=6),
)
def test_what_the_server_deflates_is_inflated_whole_from_any_chunking(texts, takeover, bits, cuts):
    extension, answer = server_side(
        server_no_context_takeover=not takeover, server_max_window_bits=bits
    )
    agreed = negotiate(OFFERED, answer)
    parser = FrameParser()
    parser.inflate = agreed.inflate
    data = b"".join(server_frame(extension, t) for t in texts)
    got, last = [], 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        got += parser.feed(data[last:cut])
        last = cut
    assert [m.data for m in got] == texts


def test_what_the_client_deflates_the_server_inflates_with_the_agreed_window():
    extension, answer = server_side(client_max_window_bits=9, client_no_context_takeover=True)
    agreed = negotiate(OFFERED, answer)
    assert "client_max_window_bits=9" in agreed.agreed
    text = "".join(f"{i:04d}" for i in range(800)) * 2  # repeats 3 KB apart
    for _ in range(2):
        data = agreed.frame(text.encode())
        assert data[0] == 0xC1  # FIN, RSV1 (compressed), text
        frame = Frame.parse  # the server's own parser reads our masked frame
        reader = _reader(data)
        parsed = frame(reader.read_exact, mask=True, extensions=[extension])
        assert next(_drive(parsed)).data.decode() == text
        assert len(data) < len(text) / 2


def _reader(data: bytes):
    from websockets.streams import StreamReader

    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


def _drive(generator):
    try:
        while True:
            next(generator)
    except StopIteration as done:
        yield done.value


def test_a_fragmented_compressed_message_is_inflated_once_whole():
    extension, answer = server_side()
    agreed = negotiate(OFFERED, answer)
    parser = FrameParser()
    parser.inflate = agreed.inflate
    text = "agent thinking " * 200
    first = wire(extension.encode(Frame(Opcode.TEXT, text[:1000].encode(), fin=False)))
    rest = wire(extension.encode(Frame(Opcode.CONT, text[1000:].encode(), fin=True)))
    assert first[0] & 0x40 and not rest[0] & 0x40  # RSV1 on the first frame only
    assert [m.data for m in parser.feed(first + rest)] == [text]


def test_a_message_inflating_past_the_limit_is_refused_with_1009():
    extension, answer = server_side()
    parser = FrameParser(max_message_bytes=64 * 1024)
    parser.inflate = negotiate(OFFERED, answer).inflate
    bomb = server_frame(extension, "0" * (1024 * 1024))  # 1 MB of zeros: about 1 KB on the wire
    assert len(bomb) < 2048
    with pytest.raises(FrameError) as info:
        parser.feed(bomb)
    assert info.value.close_code == 1009


def test_rsv1_without_a_negotiated_extension_or_on_a_control_frame_is_a_violation():
    with pytest.raises(FrameError, match="without a negotiated extension"):
        FrameParser().feed(bytes([0xC1, 1]) + b"x")
    parser = FrameParser()
    parser.inflate = negotiate(OFFERED, server_side()[1]).inflate
    with pytest.raises(FrameError, match="control or continuation"):
        parser.feed(bytes([0xC9, 0]))  # a compressed ping
    with pytest.raises(FrameError):
        FrameParser().feed(bytes([0xE1, 0]))  # RSV2


def test_garbage_in_a_compressed_frame_closes_with_1007():
    parser = FrameParser()
    parser.inflate = negotiate(OFFERED, server_side()[1]).inflate
    with pytest.raises(FrameError) as info:
        parser.feed(bytes([0xC1, 4]) + b"\xff\xff\xff\xff")
    assert info.value.close_code == 1007


def test_the_negotiated_extension_and_tls_resumption_travel_from_workers():
    who = Who(1, "alice", "w1-1-1")
    record = ConnectionAttempt(
        1.0, who, 1, 3.0, 1.0, tls_ms=1.5, tls_resumed=True, extensions="permessage-deflate"
    )
    batch = Batch("w1")
    batch.add(record, 1)
    message = msgpack.unpackb(msgpack.packb(encode(batch)))
    (got,) = records_of(decode(message))
    assert got == record
    assert [(s.name, s.detail) for s in got.samples()] == [
        ("connect", "permessage-deflate"),
        ("tls", "resumed"),
        ("auth", ""),
    ]
