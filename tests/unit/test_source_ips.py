"""--source-ips: parsed as lists, ranges and CIDRs; shared between workers; bound for real."""

from __future__ import annotations

import socket

import pytest

from wsload.errors import ConfigError
from wsload.net.source_ips import SourcePicker, check_bindable, parse_source_ips, worker_share


def test_list_range_and_cidr_expand_in_order_without_repeats():
    assert parse_source_ips("127.0.0.2, 127.0.0.3") == ("127.0.0.2", "127.0.0.3")
    assert parse_source_ips("127.0.0.2-127.0.0.5") == (
        "127.0.0.2",
        "127.0.0.3",
        "127.0.0.4",
        "127.0.0.5",
    )
    assert parse_source_ips("127.0.1.0/30") == ("127.0.1.1", "127.0.1.2")  # hosts only
    assert parse_source_ips("127.0.0.9/32 127.0.0.9") == ("127.0.0.9",)
    assert parse_source_ips("::1") == ("::1",)
    assert parse_source_ips("") == () and parse_source_ips(None) == ()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("127.0.0.300", "not an address, range or CIDR"),
        ("127.0.0.9-127.0.0.2", "lower to a higher"),
        ("127.0.0.2,::1", "mixes IPv4 and IPv6"),
        ("10.0.0.0/8", "too large"),
    ],
)
def test_bad_source_ips_name_the_item_and_the_forms(text, words):
    with pytest.raises(ConfigError) as caught:
        parse_source_ips(text)
    assert words in caught.value.message
    assert "127.0.0.2-127.0.0.40" in caught.value.fix


def test_each_worker_takes_its_own_addresses_when_there_are_enough():
    ips = tuple(f"127.0.0.{i}" for i in range(2, 8))  # six addresses
    shares = [worker_share(ips, w, 3) for w in range(3)]
    assert shares == [ips[0::3], ips[1::3], ips[2::3]]
    assert sorted(sum(shares, ())) == sorted(ips)
    assert worker_share(ips[:2], 1, 3) == ips[:2]  # fewer addresses than workers: all


def test_connections_leave_from_each_address_in_turn_with_the_port_chosen_at_connect():
    server = socket.create_server(("127.0.0.1", 0))
    server.listen(16)
    picker = SourcePicker(["127.0.0.2", "127.0.0.3"])
    peers = []
    try:
        for _ in range(4):
            client = socket.socket()
            picker.bind(client)
            assert client.getsockname()[1] == 0  # IP_BIND_ADDRESS_NO_PORT: no port yet
            client.connect(server.getsockname())
            accepted, peer = server.accept()
            peers.append(peer[0])
            assert client.getsockname()[1] != 0
            accepted.close()
            client.close()
    finally:
        server.close()
    assert peers == ["127.0.0.2", "127.0.0.3", "127.0.0.2", "127.0.0.3"]


def test_an_address_the_machine_lacks_or_of_another_family_is_refused_before_load():
    with pytest.raises(ConfigError) as caught:
        check_bindable(["192.0.2.77"], socket.AF_INET)  # TEST-NET-1: on no interface here
    assert "cannot connect from it" in caught.value.message
    assert "ip addr add" in caught.value.fix
    with pytest.raises(ConfigError, match="address family"):
        check_bindable(["::1"], socket.AF_INET)
    check_bindable(["127.0.0.2"], socket.AF_INET)  # every 127/8 address binds
