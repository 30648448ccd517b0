# Filters the base barclamp's playbooks use to check data before it reaches a config file.
# They run on the Ansible controller (crowbar), with the Python standard library only.
# Every filter returns a value or an empty result instead of raising, so that the playbook
# can fail with a message naming the role's attribute.
from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import struct

# A DNS name or a single label: letters, digits and hyphens, dot-separated.
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$"
)

_KEY_TYPES = {
    "ssh-ed25519",
    "ssh-rsa",
    "ssh-dss",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
}


def _text(value):
    return value if isinstance(value, str) else None


def crowbar_ip(value):
    """The IP address `value` (v4 or v6, no prefix) in its canonical form, or ''."""
    text = _text(value)
    if text is None:
        return ""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return ""


def crowbar_interface(value):
    """An address with its prefix ("10.0.0.5/24") as {address, prefix, cidr, network,
    version}, or {} when it is not one (an address without its prefix is not)."""
    text = _text(value)
    if text is None or "/" not in text:
        return {}
    try:
        iface = ipaddress.ip_interface(text.strip())
    except ValueError:
        return {}
    return {
        "address": str(iface.ip),
        "prefix": iface.network.prefixlen,
        "cidr": f"{iface.ip}/{iface.network.prefixlen}",
        "network": str(iface.network),
        "version": iface.version,
    }


def crowbar_network(value):
    """The network of a subnet or an address with prefix ("10.0.0.5/24" -> "10.0.0.0/24");
    a bare address is its own /32 or /128. '' when it is neither."""
    text = _text(value)
    if text is None:
        return ""
    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        return ""


def crowbar_host(value):
    """`value` when it is an IP address or a host name fit for a config file line, else ''."""
    text = _text(value)
    if text is None:
        return ""
    text = text.strip()
    if crowbar_ip(text):
        return crowbar_ip(text)
    return text if _HOSTNAME.match(text) else ""


def crowbar_hostname(value):
    """`value` when it is a host name (no IP address), else ''."""
    text = _text(value)
    if text is None or crowbar_ip(text):
        return ""
    return text if _HOSTNAME.match(text) and not text.endswith(".") else ""


def crowbar_ssh_key(value):
    """Checks one OpenSSH public key line: `type base64 [comment]` on one line, a known key
    type, base64 that decodes to a blob naming that same type. Returns {ok, key, id, reason}:
    `key` the line with its whitespace normalized, `id` the `type base64` part (how two
    lines holding the same key are recognized)."""
    text = _text(value)
    if text is None:
        return {"ok": False, "key": "", "id": "", "reason": "not a string"}
    if "\n" in text.strip() or "\r" in text or "\x00" in text:
        return {"ok": False, "key": "", "id": "", "reason": "more than one line"}
    fields = text.strip().split(None, 2)
    if len(fields) < 2:
        return {"ok": False, "key": "", "id": "", "reason": "not `type base64 [comment]`"}
    kind, blob = fields[0], fields[1]
    if kind not in _KEY_TYPES:
        return {
            "ok": False,
            "key": "",
            "id": "",
            "reason": f"unknown key type {kind[:40]!r} (options before the key are not accepted)",
        }
    try:
        raw = base64.b64decode(blob, validate=True)
        (length,) = struct.unpack(">I", raw[:4])
        embedded = raw[4 : 4 + length].decode("ascii")
    except (binascii.Error, struct.error, UnicodeDecodeError, ValueError):
        return {"ok": False, "key": "", "id": "", "reason": "the key data is not valid base64 key data"}
    if embedded != kind:
        return {
            "ok": False,
            "key": "",
            "id": "",
            "reason": f"the key data is of type {embedded[:40]!r}, not {kind!r}",
        }
    comment = " ".join(fields[2].split()) if len(fields) > 2 else ""
    key = f"{kind} {blob}" + (f" {comment}" if comment else "")
    return {"ok": True, "key": key, "id": f"{kind} {blob}", "reason": ""}


class FilterModule:
    def filters(self):
        return {
            "crowbar_ip": crowbar_ip,
            "crowbar_interface": crowbar_interface,
            "crowbar_network": crowbar_network,
            "crowbar_host": crowbar_host,
            "crowbar_hostname": crowbar_hostname,
            "crowbar_ssh_key": crowbar_ssh_key,
        }
