"""The guard every outgoing request to a user's URL passes (a dataset, a validation file, a
webhook): the host's addresses must all be public, or in a network the deployment allows
(AVLORA_INGEST_ALLOW_NETWORKS); the request then goes to the address that was checked, so a second
DNS answer cannot swap it. Also how error texts show a user's URL."""

import ipaddress
import re
import socket
from dataclasses import dataclass

from avlora import config

ALLOW_VARIABLE = "AVLORA_INGEST_ALLOW_NETWORKS"
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class AllowList:
    """The networks allowed despite being non-public: ingest's AVLORA_INGEST_ALLOW_NETWORKS (listed
    with IngestLimits), which the ledger reads too for webhook URLs."""
    ENV_PREFIX = "INGEST_"
    allow_networks: str = ""

    @classmethod
    def from_env(cls) -> "AllowList":
        return config.from_env(cls)

    @property
    def networks(self) -> list["Network"]:
        return parse_networks(self.allow_networks)


class AddressRefused(Exception):
    """The host resolves to a refused address (or not at all: `transient`)."""

    def __init__(self, reason: str, transient: bool = False):
        super().__init__(reason)
        self.transient = transient


def parse_networks(text: str) -> list[Network]:
    """Comma-separated CIDRs ("127.0.0.0/8, ::1/128")."""
    return [ipaddress.ip_network(cidr.strip(), strict=False) for cidr in text.split(",") if cidr.strip()]


def is_allowed_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address, allowed: list[Network]) -> bool:
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    if any(address.version == network.version and address in network for network in allowed):
        return True
    return address.is_global and not address.is_multicast


def checked_address(host: str, port: int, allowed: list[Network]) -> str:
    """The first address of `host`, after checking that every address it resolves to is public or
    in an allowed network; AddressRefused otherwise."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise AddressRefused(f"cannot resolve host {host} ({error})", transient=True) from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    for address in addresses:
        if not is_allowed_address(address, allowed):
            raise AddressRefused(f"host {host} resolves to the non-public address {address}, which is refused "
                                 f"({ALLOW_VARIABLE} can allow a network)")
    return str(addresses[0])


def redact_url(url: str) -> str:
    """`url` as error texts show it: credentials (user:password@) replaced by ***, control
    characters percent-encoded."""
    scheme, separator, rest = url.partition("://")
    if separator:
        authority_end = min((rest.find(mark) for mark in "/?#" if mark in rest), default=len(rest))
        authority = rest[:authority_end]
        if "@" in authority:
            rest = "***@" + authority.rsplit("@", 1)[1] + rest[authority_end:]
    text = scheme + separator + rest
    return CONTROL_CHARACTERS.sub(lambda match: f"%{ord(match.group()):02X}", text)
