"""``get_node_ip_address``: this machine's IP address, as Ray's ``ray.util`` gives it."""

from __future__ import annotations

import socket


def get_node_ip_address(address: str = "8.8.8.8:53") -> str:
    """The IP address by which this node reaches others (the driver's or a worker's machine).

    As Ray's: the local address of a UDP socket pointed at ``address`` (no packet is
    sent), so the interface a route would use; ``127.0.0.1`` when the machine has no route.
    Needs no running sluice.
    """
    host, _, port = address.rpartition(":")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, int(port)))
            ip = s.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    return ip if ip and ip != "0.0.0.0" else "127.0.0.1"
