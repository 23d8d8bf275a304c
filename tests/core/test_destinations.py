"""Forwarding destinations: one strict spelling of ``host:port``, since the recording proxy and
sshd's permitopen both compare it literally, and nothing else ever reaches an authorized_keys line."""

from __future__ import annotations

import pytest

from core.destinations import (
    Destination,
    InvalidDestination,
    canonical_destination,
    destination_of_request,
    valid_destinations,
)

RDS = "mydb.abc123xyz.eu-west-1.rds.amazonaws.com:3306"


@pytest.mark.parametrize(
    ("given", "spelled"),
    [
        (RDS, RDS),
        ("MyDB.ABC123XYZ.eu-west-1.RDS.amazonaws.com:3306", RDS),  # hosts are lowercased
        ("db:5432", "db:5432"),
        ("10.0.12.7:5432", "10.0.12.7:5432"),
        ("127.0.0.2:1", "127.0.0.2:1"),
        ("[FD00::0005]:3306", "[fd00::5]:3306"),  # IPv6 compressed, in brackets
        ("[::ffff:10.0.0.1]:65535", "[::ffff:a00:1]:65535"),
    ],
)
def test_a_destination_has_one_spelling(given: str, spelled: str) -> None:
    assert canonical_destination(given) == spelled


HOSTILE = [
    'db:3306,permitopen="*:*"',  # a second option smuggled into the line
    'db":3306',
    'db:3306"',
    "'db':3306",
    "db:3306\n",
    "db:3306\nssh-ed25519 AAAA",
    "db\r:3306",
    "db\x00:3306",
    "db:3306 ",
    "my db:3306",
    "*:3306",
    "*.rds.amazonaws.com:3306",
    "db:*",
    "db?:3306",
    "[::1:3306",  # unclosed bracket
    "[::1]3306",
    "[db]:3306",  # only IPv6 goes in brackets
    "[fe80::1%eth0]:3306",  # a zone is not a literal sshd can match
    "::1:3306",  # IPv6 without brackets is ambiguous
    "db:0",
    "db:70000",
    "db:65536",
    "db:03306",
    "db:-1",
    "db:+22",
    "db:\uff13\uff13\uff10\uff16",  # full-width digits
    "db:",
    ":3306",
    "db",
    "",
    "db..example:3306",
    ".db:3306",
    "db.:3306",
    "-db:3306",
    "db-:3306",
    "db_1:3306",
    "d\u00e9b:3306",  # not ASCII
    "0x7f000001:22",  # inet_aton would read these as numbers: 127.0.0.1
    "010.0.0.1:22",
    "127.1:22",
    "256.0.0.1:22",
    "1.2.3.4.5:22",
    "a" * 64 + ".example:22",  # a label is at most 63 characters
    ("a" * 60 + ".") * 5 + "com:22",  # a name is at most 253
    "localhost:5432",  # the instance itself: its ports are the account's forwarding ports
    "127.0.0.1:5432",
    "[::1]:5432",
    "LOCALHOST:5432",
    # The instance itself under other names, and its own sshd under other loopback addresses.
    "localhost.localdomain:5432",
    "db.localhost:5432",
    "ip6-localhost:5432",
    "localhost4:22",
    "localhost6.localdomain6:5432",
    "0.0.0.0:5432",
    "[::]:5432",
    "[::ffff:0.0.0.0]:5432",
    "127.0.0.2:22",
    "127.1.2.3:22",
    "[::ffff:127.0.0.1]:22",
    "[0:0:0:0:0:0:0:1]:22",
    ["db:3306"],
    None,
    3306,
]


@pytest.mark.parametrize("value", HOSTILE)
def test_anything_else_is_refused(value: object) -> None:
    with pytest.raises(InvalidDestination):
        canonical_destination(value)


def test_what_ssh_L_asks_for_is_read_in_the_same_spelling() -> None:
    assert destination_of_request("MyDB.example", 3306) == Destination("mydb.example", 3306)
    assert str(destination_of_request("FD00::5", 3306)) == "[fd00::5]:3306"
    assert destination_of_request("*", 3306) is None
    assert destination_of_request("db", 0) is None
    assert destination_of_request('db",permitopen="x', 22) is None


def test_a_stored_list_yields_only_what_is_a_destination_in_its_spelling() -> None:
    stored = [RDS, "DB:1", "db:1", RDS, 'x:1,permitopen="*:*"', 5432, None]
    assert valid_destinations(stored) == (RDS, "db:1")
    assert valid_destinations("db:1") == ()
    assert valid_destinations(None) == ()


@pytest.mark.parametrize(
    "value",
    [
        "169.254.169.254:80",  # instance metadata: the instance role's credentials
        "[fd00:ec2::254]:80",
        "[::ffff:169.254.169.254]:80",  # the same address, IPv4-mapped
        "169.254.169.253:53",  # the Amazon DNS server
        "[fd00:ec2::253]:53",
        "169.254.169.123:123",  # Amazon Time Sync
        "[fd00:ec2::123]:123",
        "169.254.169.250:1688",  # Windows license activation
        "169.254.169.251:1688",
        "[fd00:ec2::240]:1688",
    ],
)
def test_the_addresses_the_ssm_agent_never_forwards_to_are_refused(value: str) -> None:
    # amazon-ssm-agent appconfig/constants.go DefaultDeniedPortForwardingRemoteIPs: the agent refuses
    # them for remote-host port forwarding; through ssh -L the instance's sshd would dial them.
    with pytest.raises(InvalidDestination, match="EC2 keeps for the instance"):
        canonical_destination(value)
    assert valid_destinations([value, "db:1"]) == ("db:1",)


def test_other_link_local_addresses_stay_destinations() -> None:
    assert canonical_destination("169.254.169.1:80") == "169.254.169.1:80"


@pytest.mark.parametrize(
    "value",
    [
        # EC2's names for its metadata service: through the VPC's search domain, and in full.
        "instance-data:80",
        "instance-data.ec2.internal:80",
        "INSTANCE-DATA.EC2.INTERNAL:80",  # names are lowercased first
        "instance-data.ec2.internal.:80",  # the same name, fully qualified
        "instance-data.:80",
        "instance-data.eu-west-1.compute.internal:80",
        # Names that spell one of the addresses: wildcard DNS (nip.io, sslip.io) and EC2's ip-a-b-c-d names.
        "169.254.169.254.nip.io:80",
        "app.169.254.169.254.nip.io:80",
        "169-254-169-254.sslip.io:80",
        "metadata-169-254-169-254.nip.io:80",
        "ip-169-254-169-254.ec2.internal:80",
        "a9fea9fe.nip.io:80",  # nip.io's hex form
        "169.254.169.253.nip.io:53",  # the Amazon DNS server
        "fd00-ec2--254.sslip.io:80",  # sslip.io's IPv6 form
    ],
)
def test_names_the_instance_would_resolve_to_ec2_s_own_addresses_are_refused(value: str) -> None:
    # The portal does not resolve names (the instance's DNS answers them, not the portal's): these are
    # the ones known to lead there. The SSM agent resolves and refuses them (port.go validateParameters);
    # through ssh -L the instance's sshd would resolve and dial them.
    with pytest.raises(InvalidDestination, match="EC2 keeps for the instance"):
        canonical_destination(value)
    assert valid_destinations([value, "db:1"]) == ("db:1",)


@pytest.mark.parametrize(
    "value",
    [
        "instance-data-export.internal:80",  # another name
        "data.instance-data.example:80",
        "instance-data.example.com:80",  # a name of the customer's own domain
        "169.254.169.1.nip.io:80",  # another link-local address
        "10-0-12-7.nip.io:5432",
        "a9fea9f0.nip.io:80",
    ],
)
def test_names_near_them_stay_destinations(value: str) -> None:
    assert canonical_destination(value) == value
