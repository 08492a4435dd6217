"""sluice.util.get_node_ip_address: this machine's address, with or without a runtime."""

from __future__ import annotations

import ipaddress

from sluice.util import get_node_ip_address


def test_it_is_an_ipv4_address_of_this_machine() -> None:
    ip = ipaddress.ip_address(get_node_ip_address())
    assert ip.version == 4 and not ip.is_unspecified


def test_with_no_route_it_is_loopback() -> None:
    assert get_node_ip_address("256.0.0.1:53") == "127.0.0.1"  # no such address: no route
