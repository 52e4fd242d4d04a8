"""Addresses and names worth looking up: public IPs, public-looking domain names, SHA-256 hashes.

Written with string operations instead of ``ipaddress`` and ``re``: importing those two costs more
than the rest of a run, and the program is started once per alert. The address ranges that are never
looked up are listed in NON_PUBLIC_V4 / NON_PUBLIC_V6 (docs/opencti.md, "What is looked up").
"""

EMPTY_FILE_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
NON_PUBLIC_SUFFIXES = frozenset(("arpa", "local", "localhost", "localdomain", "internal", "lan", "home", "test",
                                 "invalid"))
_HEX = frozenset("0123456789abcdefABCDEF")
_LABEL = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
_TLD = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyz")
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")


class Observable(tuple):
    """(kind, value): kind is ipv4, ipv6, domain, url or sha256."""

    __slots__ = ()

    def __new__(cls, kind, value):
        return tuple.__new__(cls, (kind, value))

    @property
    def kind(self):
        return self[0]

    @property
    def value(self):
        return self[1]


# --------------------------------------------------------------------------------- IP addresses
def _v4_int(text):
    """The address as an int, or None: four decimal octets 0-255 without leading zeros (as ipaddress)."""
    parts = text.split(".")
    if len(parts) != 4:
        return None
    number = 0
    for part in parts:
        if not part or len(part) > 3 or not part.isascii() or not part.isdigit():
            return None
        if len(part) > 1 and part[0] == "0":
            return None
        octet = int(part)
        if octet > 255:
            return None
        number = number << 8 | octet
    return number


def _v6_int(text):
    """The address as an int, or None (RFC 4291 text forms, an embedded IPv4 tail allowed)."""
    if not text.isascii() or text.count("::") > 1 or ":::" in text:
        return None
    tail = []
    if "." in text:
        head, _colon, last = text.rpartition(":")
        v4 = _v4_int(last)
        if v4 is None or not head:
            return None
        tail = [v4 >> 16, v4 & 0xFFFF]
        text = head + ":0:0"  # placeholders, replaced by the IPv4 groups below
    if "::" in text:
        left, _sep, right = text.partition("::")
        left_groups = left.split(":") if left else []
        right_groups = right.split(":") if right else []
        missing = 8 - len(left_groups) - len(right_groups)
        if missing < 1:
            return None
        groups = left_groups + ["0"] * missing + right_groups
    else:
        groups = text.split(":")
    if len(groups) != 8:
        return None
    values = []
    for group in groups:
        if not 1 <= len(group) <= 4 or not all(char in _HEX for char in group):
            return None
        values.append(int(group, 16))
    if tail:
        values[6:8] = tail
    number = 0
    for value in values:
        number = number << 16 | value
    return number


def _networks(table, bits):
    """[(first, last)] of 'address/prefix' strings."""
    parse = _v4_int if bits == 32 else _v6_int
    ranges = []
    for item in table:
        address, _slash, prefix = item.partition("/")
        host_bits = bits - int(prefix)
        first = parse(address) >> host_bits << host_bits
        ranges.append((first, first | ((1 << host_bits) - 1)))
    return tuple(ranges)


# Never looked up: "this network", private, shared (CGN), loopback, link-local, IETF protocol
# assignments, documentation, benchmarking, multicast, reserved and broadcast.
NON_PUBLIC_V4 = ("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
                 "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
                 "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4")
# Unspecified, loopback, IPv4-mapped (unmapped before this check), IPv4-translated, discard-only,
# IETF protocol assignments, documentation, unique local, link-local, site-local, multicast, and
# everything outside 2000::/3 (reserved by IANA).
NON_PUBLIC_V6 = ("::/8", "100::/8", "200::/7", "400::/6", "800::/5", "1000::/4", "4000::/3", "6000::/3", "8000::/3",
                 "a000::/3", "c000::/3", "e000::/4", "f000::/5", "f800::/6", "fc00::/7", "fe00::/9", "fe80::/10",
                 "fec0::/10", "ff00::/8", "2001::/23", "2001:db8::/32", "3fff::/20")
_V4_RANGES = _networks(NON_PUBLIC_V4, 32)
_V6_RANGES = _networks(NON_PUBLIC_V6, 128)
_MAPPED = 0xFFFF << 32


def _v6_text(number):
    """RFC 5952 form: lower case, the longest run of two or more zero groups as '::' (the first if tied)."""
    groups = [(number >> shift) & 0xFFFF for shift in range(112, -1, -16)]
    best_start, best_len, start = -1, 0, None
    for index, value in enumerate([*groups, 1]):
        if value == 0 and index < 8:
            if start is None:
                start = index
        elif start is not None:
            if index - start > best_len:
                best_start, best_len = start, index - start
            start = None
    words = [f"{value:x}" for value in groups]
    if best_len < 2:
        return ":".join(words)
    return ":".join(words[:best_start]) + "::" + ":".join(words[best_start + best_len:])


def public_ip(text):
    """An ipv4/ipv6 Observable when text is a globally routable address (IPv6 compressed), else None."""
    if not isinstance(text, str):
        return None
    text = text.strip().strip("[]").split("%")[0]
    number = _v4_int(text)
    if number is None:
        number = _v6_int(text)
        if number is None:
            return None
        if number >> 32 == 0xFFFF:  # ::ffff:a.b.c.d is the IPv4 address
            number &= 0xFFFFFFFF
        else:
            if any(first <= number <= last for first, last in _V6_RANGES):
                return None
            return Observable("ipv6", _v6_text(number))
    if any(first <= number <= last for first, last in _V4_RANGES):
        return None
    return Observable("ipv4", f"{number >> 24}.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}")


# ------------------------------------------------------------------------------ names and hashes
def _domain_ok(name):
    """4-253 characters, two labels or more; labels [a-z0-9_-] not ending in '-' (the last one
    starting with a letter and without '_'), 63 characters at most."""
    if not 4 <= len(name) <= 253 or not name.isascii():
        return False
    labels = name.split(".")
    if len(labels) < 2:
        return False
    for label in labels[:-1]:
        if not 1 <= len(label) <= 63 or not all(char in _LABEL for char in label):
            return False
        if label[0] == "-" or (len(label) > 1 and label[-1] not in _ALNUM):
            return False
    last = labels[-1]
    return 1 <= len(last) <= 63 and last[0] in _LETTERS and all(char in _TLD for char in last)


def domain_name(text):
    """A domain Observable for a public-looking DNS name (lower case, no trailing dot), else None."""
    if not isinstance(text, str):
        return None
    name = text.strip().rstrip(".").lower()
    if not _domain_ok(name) or name.rsplit(".", 1)[-1] in NON_PUBLIC_SUFFIXES:
        return None
    return Observable("domain", name)


def sha256(text):
    """A sha256 Observable (lower case), skipping the hash of the empty file; else None."""
    if not isinstance(text, str):
        return None
    value = text.strip()
    if len(value) != 64 or not all(char in _HEX for char in value):
        return None
    value = value.lower()
    return None if value == EMPTY_FILE_SHA256 else Observable("sha256", value)


def host_observable(host):
    """The IP or domain Observable for a host name found in a URL or a command."""
    return public_ip(host) or domain_name(host)
