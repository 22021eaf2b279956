"""The address checks: the public-address check remote media fetching relies on (IPv6 forms that carry an IPv4
address inside are judged by that address too), and the loopback check that decides who may skip a login."""

from __future__ import annotations

import pytest

from domain.addresses import is_loopback, is_public_address


@pytest.mark.parametrize(
    "address",
    [
        # this machine
        "127.0.0.1",
        "::1",
        "::127.0.0.1",  # IPv4-compatible
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:0:127.0.0.1",  # IPv4-translated (SIIT)
        "64:ff9b::7f00:1",  # NAT64 well-known prefix
        "2002:7f00:1::",  # 6to4
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1 (stored inverted)
        "2606:4700::5efe:7f00:1",  # ISATAP interface identifier under a public prefix
        "2606:4700::200:5efe:7f00:1",
        # private networks, link-local, shared, unspecified, multicast
        "10.0.0.1",
        "::ffff:10.0.0.1",
        "::10.0.0.1",
        "64:ff9b::a00:1",
        "64:ff9b::c0a8:101",  # 192.168.1.1
        "64:ff9b::a9fe:a9fe",  # 169.254.169.254, the cloud metadata service
        "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
        "2002:a9fe:a9fe::",
        "2001:0:a00:1:8000:63bf:3fff:fdd2",  # Teredo with a private server (10.0.0.1)
        "64:ff9b:1::a00:1",  # NAT64 local-use prefix
        "100.64.0.1",
        "64:ff9b::6440:1",  # 100.64.0.1, carrier-grade NAT
        "169.254.169.254",
        "fe80::1%eth0",
        "fc00::1",
        "0.0.0.0",
        "::",
        "224.0.0.1",
        "64:ff9b::e000:1",  # 224.0.0.1
        "ff02::1",
    ],
)
def test_this_machine_and_private_networks_are_refused_in_every_wrapping(address):
    assert not is_public_address(address)


@pytest.mark.parametrize(
    "address",
    [
        "93.184.215.14",
        "8.8.8.8",
        "2606:4700:4700::1111",
        "2a00:1450:4001:82b::200e",
        "::ffff:8.8.8.8",  # how a dual-stack socket shows a public IPv4 address
        "64:ff9b::808:808",  # what DNS64 answers for a public IPv4-only site on an IPv6-only network
        "2a00:1450:4001:82b::200e%eth0",
    ],
)
def test_public_addresses_pass(address):
    assert is_public_address(address)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1", "localhost"])
def test_this_machine_is_loopback(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.2", "10.0.0.1", "8.8.8.8", "example.org", "localhost.example"])
def test_other_hosts_are_not_loopback(host):
    assert not is_loopback(host)
