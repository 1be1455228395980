"""The IBM provider's schema checks (``terraform plan``): argument values refused before any API call.

Taken from terraform-provider-ibm v2.5.0 (tag v2.5.0, commit 9f9b7ec), ``ibm/service/vpc``:
the ``ResourceIBMIS*Validator()`` tables that ``validate.InvokeValidator`` applies (names
``^([a-z]|[a-z][-a-z0-9]*[a-z0-9])$`` of 1 to 63 characters, tags ``^[A-Za-z0-9:_ .-]+$`` of 1 to
128, the security-group rule's direction/protocol/port/ICMP enums and ranges), the ssh key's
``type`` (``validation.StringInSlice``) and the security-group rule's ``CustomizeDiff``
(``ResourceSgRuleProtocolValidate``: ``type``/``code`` only with icmp, ports only with tcp/udp).
Messages are the provider's (``ibm/validate/validators.go``, hashicorp's ``validation``).

A value that is unknown at plan (computed by another resource) is skipped, as Terraform does.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

NAME = r"^([a-z]|[a-z][-a-z0-9]*[a-z0-9])$"
TAG = r"^[A-Za-z0-9:_ .-]+$"
UNKNOWN = "(known after apply)"

# resource_ibm_is_security_group_rule.go: the named protocols and number_<n> for these n only
_PROTOCOL_NAMES = ("tcp", "udp", "icmp", "ah", "any", "esp", "gre", "icmp_tcp_udp", "ip_in_ip", "l2tp")
_PROTOCOL_NAMES += ("rsvp", "sctp", "vrrp")
_NO_NUMBER = {0, 1, 4, 6, 17, 43, 44, 46, 47, 50, 51, 58, 59, 60, 112, 115, 132, 135}
PROTOCOLS = _PROTOCOL_NAMES + tuple(f"number_{n}" for n in range(256) if n not in _NO_NUMBER)

Check = Callable[[str, Any], str | None]


def regexp_len(regex: str, low: int, high: int) -> Check:
    def check(key: str, value: Any) -> str | None:
        text = str(value)
        if not re.match(regex, text):
            return f'"{key}" ("{text}") should match regexp {regex}'
        if not low <= len(text) <= high:
            return f'"{key}" ("{text}") must contain from {low} to {high} characters'
        return None

    return check


def one_of(*allowed: str) -> Check:
    def check(key: str, value: Any) -> str | None:
        if str(value) in allowed:
            return None
        more = ", ..." if len(allowed) > 12 else ""
        shown = "[]string{" + ", ".join(f'"{a}"' for a in allowed[:12]) + more
        return f'"{key}" must contain a value from {shown}}}, got "{value}"'

    return check


def int_between(low: int, high: int) -> Check:
    def check(key: str, value: Any) -> str | None:
        try:
            number = int(value)
        except (TypeError, ValueError):
            return f"expected type of {key} to be integer"
        if low <= number <= high:
            return None
        return f"expected {key} to be in the range ({low} - {high}), got {number}"

    return check


def cidr(key: str, value: Any) -> str | None:
    try:
        ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        return f'"{key}" ("{value}") is not a valid CIDR address'
    return None


NAME_CHECK = regexp_len(NAME, 1, 63)
TAG_CHECK = regexp_len(TAG, 1, 128)
_PORT = int_between(1, 65535)

# resource type -> {argument path: check}; "tags" means every element; "a.b" is a nested block.
SCHEMA: dict[str, dict[str, Check]] = {
    "ibm_is_vpc": {
        "name": NAME_CHECK,
        "default_security_group_name": NAME_CHECK,
        "default_network_acl_name": NAME_CHECK,
        "default_routing_table_name": NAME_CHECK,
        "address_prefix_management": one_of("auto", "manual"),
        "tags": TAG_CHECK,
    },
    "ibm_is_subnet": {"name": NAME_CHECK, "ipv4_cidr_block": cidr, "tags": TAG_CHECK},
    "ibm_is_public_gateway": {"name": NAME_CHECK, "tags": TAG_CHECK},
    "ibm_is_security_group": {"name": NAME_CHECK, "tags": TAG_CHECK},
    "ibm_is_security_group_rule": {
        "direction": one_of("inbound", "outbound"),
        "ip_version": one_of("ipv4"),
        "protocol": one_of(*PROTOCOLS),
        "port_min": _PORT,
        "port_max": _PORT,
        "type": int_between(0, 254),
        "code": int_between(0, 255),
        "tcp.port_min": _PORT,
        "tcp.port_max": _PORT,
        "udp.port_min": _PORT,
        "udp.port_max": _PORT,
        "icmp.type": int_between(0, 254),
        "icmp.code": int_between(0, 255),
    },
    "ibm_is_ssh_key": {"name": NAME_CHECK, "type": one_of("ed25519", "rsa"), "tags": TAG_CHECK},
    "ibm_is_floating_ip": {"name": NAME_CHECK, "tags": TAG_CHECK},
    "ibm_is_instance": {"name": NAME_CHECK, "tags": TAG_CHECK, "boot_volume.name": NAME_CHECK},
    "ibm_is_subnet_reserved_ip": {"name": NAME_CHECK},
}
SCHEMA["ibm_is_instance"]["boot_volume.tags"] = TAG_CHECK


def _values(cfg: dict[str, Any], path: str) -> list[tuple[str, Any]]:
    """``(key as the provider names it, value)`` for one argument path; lists give one per item."""
    head, _, rest = path.partition(".")
    value = cfg.get(head)
    if value is None:
        return []
    if rest:
        blocks = value if isinstance(value, list) else [value]
        return [
            (f"{head}.{i}.{key}", v)
            for i, block in enumerate(blocks)
            if isinstance(block, dict)
            for key, v in _values(block, rest)
        ]
    if isinstance(value, list):
        return [(f"{head}.{i}", v) for i, v in enumerate(value)]
    return [(head, value)]


def _rule_protocol_conflicts(cfg: dict[str, Any]) -> list[str]:
    """ResourceSgRuleProtocolValidate (CustomizeDiff): fields that the protocol does not take."""
    protocol = cfg.get("protocol")
    if protocol is None or UNKNOWN in str(protocol):
        return []
    errors = []
    if protocol != "icmp":
        for key in ("type", "code"):
            if key in cfg:
                errors.append(
                    f"attribute '{key}' conflicts with protocol {protocol}; "
                    f"'{key}' is only valid for icmp protocol"
                )
    if protocol not in ("tcp", "udp"):
        for key in ("port_min", "port_max"):
            if key in cfg:
                errors.append(
                    f"attribute '{key}' conflicts with protocol {protocol}; "
                    "ports apply only to tcp/udp protocol"
                )
    blocks = [b for b in ("tcp", "udp", "icmp") if cfg.get(b)]
    if blocks and ("protocol" in cfg or len(blocks) > 1):
        errors.append(f'"{blocks[0]}": conflicts with {"protocol" if "protocol" in cfg else blocks[1]}')
    return errors


def schema_errors(rtype: str, cfg: dict[str, Any]) -> list[str]:
    """Every provider schema error for one resource's evaluated arguments (empty when valid)."""
    errors = []
    for path, check in SCHEMA.get(rtype, {}).items():
        for key, value in _values(cfg, path):
            if value is None or UNKNOWN in str(value):
                continue
            message = check(key, value)
            if message:
                errors.append(message)
    if rtype == "ibm_is_security_group_rule":
        errors.extend(_rule_protocol_conflicts(cfg))
    return errors
