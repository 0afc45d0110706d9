"""Where the HTTP activity may connect: host allowlists and blocking of private addresses.

Two layers, both checked before connecting and again on every redirect and for the OAuth2 token
URL:

* the **process-wide** :class:`HttpActivitySettings` (installed by the worker at start-up with
  :func:`configure_http_activity`): an operator's allowlist that no job can widen, and the option
  to refuse loopback, private, link-local and other non-global addresses — both when the URL
  names an address literally and when a host name resolves to one (the check runs in the DNS
  resolver of the shared sessions, so a name cannot smuggle in an internal address);
* a request's own ``allowed_hosts``, which can only narrow the process-wide list.

Patterns are exact host names or addresses (``api.example.vn``, ``10.0.0.5``) or ``*.suffix``
(``*.bank.vn`` matches ``core.bank.vn`` and ``a.b.bank.vn`` but not ``bank.vn``). Names are
compared case-insensitively, without a trailing dot, in their IDNA (punycode) form.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from yarl import URL

from cadenza.history import InvalidArgumentError

# --------------------------------------------------------------------------- process settings


@dataclass(frozen=True, kw_only=True)
class HttpActivitySettings:
    """Process-wide limits of the HTTP activity, set by the operator, not by jobs.

    Attributes:
        allowed_hosts: When set, every URL (and every redirect and token URL) must match one of
            these host patterns (exact host or ``*.suffix``), in addition to a job's own
            ``allowed_hosts``. None (the default) allows any host.
        block_private_addresses: Refuse to connect to loopback, private, link-local and other
            non-global addresses, whether given literally or resolved from a name. Default false
            (so ``cadenza dev`` and tests can call services on 127.0.0.1); turn it on in
            production so that a job cannot reach internal addresses.
        allowed_networks: CIDR networks exempt from ``block_private_addresses`` (for example
            the subnet of an internal API gateway).
    """

    allowed_hosts: tuple[str, ...] | None = None
    block_private_addresses: bool = False
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()


_settings = HttpActivitySettings()


def configure_http_activity(
    *,
    allowed_hosts: Sequence[str] | None = None,
    block_private_addresses: bool = False,
    allowed_networks: Sequence[str] = (),
) -> HttpActivitySettings:
    """Install the process-wide settings of the HTTP activity (call once at start-up).

    Args:
        allowed_hosts: See :class:`HttpActivitySettings`.
        block_private_addresses: See :class:`HttpActivitySettings`.
        allowed_networks: See :class:`HttpActivitySettings`.

    Returns:
        The settings that were in force before (so tests can restore them).

    Raises:
        InvalidArgumentError: for a malformed host pattern or network.
    """
    global _settings
    hosts = (
        None
        if allowed_hosts is None
        else tuple(
            normalize_host_pattern(p, f"allowed_hosts[{i}]") for i, p in enumerate(allowed_hosts)
        )
    )
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for i, text in enumerate(allowed_networks):
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError as exc:
            raise InvalidArgumentError(f"allowed_networks[{i}]", str(exc)) from None
    previous = _settings
    _settings = HttpActivitySettings(
        allowed_hosts=hosts,
        block_private_addresses=block_private_addresses,
        allowed_networks=tuple(networks),
    )
    return previous


def restore_http_activity_settings(settings: HttpActivitySettings) -> None:
    """Put back settings returned by :func:`configure_http_activity` (for tests)."""
    global _settings
    _settings = settings


def http_activity_settings() -> HttpActivitySettings:
    """The process-wide settings in force."""
    return _settings


def is_blocked_address(address: str, settings: HttpActivitySettings | None = None) -> bool:
    """Whether connecting to the IP ``address`` is forbidden by ``block_private_addresses``."""
    current = settings or _settings
    if not current.block_private_addresses:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return True  # not an address we understand: refuse rather than guess
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in current.allowed_networks):
        return False
    return not ip.is_global or ip.is_multicast


# --------------------------------------------------------------------------- host allowlist

_HOST_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


def _normalize_host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def normalize_host_pattern(pattern: str, field_name: str) -> str:
    """Check and normalize one allowlist pattern.

    Raises:
        InvalidArgumentError: naming ``field_name`` when it is not a name, an address or
            ``*.`` followed by a name.
    """
    if not isinstance(pattern, str) or not pattern.strip():
        raise InvalidArgumentError(field_name, "host pattern must be a non-empty string")
    raw = pattern.strip()
    wildcard = raw.startswith("*.")
    host = _normalize_host(raw[2:] if wildcard else raw)
    try:
        ipaddress.ip_address(host)
        is_ip = True
    except ValueError:
        is_ip = False
    if is_ip:
        if wildcard:
            raise InvalidArgumentError(field_name, f"{pattern!r}: '*.' cannot prefix an address")
        return host
    labels = host.split(".")
    if not all(_HOST_LABEL.match(label) for label in labels):
        raise InvalidArgumentError(
            field_name, f"{pattern!r} is not a host name, an address or '*.' followed by a name"
        )
    return f"*.{host}" if wildcard else host


def host_matches(host: str, patterns: Sequence[str]) -> bool:
    """Whether ``host`` matches one of the normalized ``patterns``.

    ``api.example.com`` matches only itself; ``*.example.com`` matches any name below
    ``example.com`` (``a.example.com``, ``a.b.example.com``) but not ``example.com`` itself.
    """
    name = _normalize_host(host)
    for pattern in patterns:
        if pattern.startswith("*."):
            if name.endswith(pattern[1:]):
                return True
        elif name == pattern:
            return True
    return False


def check_url_allowed(
    url: URL, job_patterns: Sequence[str] | None, *, field_name: str = "url", what: str = "URL"
) -> None:
    """Refuse ``url`` when it is outside an allowlist or is a blocked literal address.

    Raises:
        InvalidArgumentError: naming ``field_name``.
    """
    host = url.raw_host or ""
    settings = _settings
    if settings.allowed_hosts is not None and not host_matches(host, settings.allowed_hosts):
        raise InvalidArgumentError(
            field_name, f"{what} host {host!r} is not in the process-wide allowlist of hosts"
        )
    if job_patterns is not None and not host_matches(host, job_patterns):
        raise InvalidArgumentError(field_name, f"{what} host {host!r} is not in allowed_hosts")
    try:
        ipaddress.ip_address(_normalize_host(host))
        literal = True
    except ValueError:
        literal = False
    if literal and is_blocked_address(_normalize_host(host), settings):
        raise InvalidArgumentError(
            field_name, f"{what} host {host!r} is a private or loopback address, which is blocked"
        )
