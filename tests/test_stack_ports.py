"""The ports a stack gives its processes: never ones the kernel may hand to an outgoing connection
while the process that is to listen on it is still starting (a test once failed on that)."""

import socket
from pathlib import Path

from avlora.stack import free_port


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range():
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50 and all(10000 <= port < ephemeral_low for port in ports)
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
