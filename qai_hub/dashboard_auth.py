"""Operator login for the hub's dashboard: password file, sessions, CSRF tokens, throttle, hosts, proxies.

No rclpy import, no web framework. The password (or a long random token) is read from a file (mode 0600
recommended; a missing default file is created with a random token); a login compares SHA-256 digests
in constant time (hmac.compare_digest), so neither the content nor the length leaks through timing.
A session is a random 256-bit token in an HttpOnly, SameSite=Strict cookie; each session has its own
CSRF token, which every state-changing request must carry in a header (a page on another site can
neither read it nor make the browser send it). Sessions live in memory, expire, and are bounded.
Login attempts are counted per client and for the account, atomically, and a stranger cannot use up the
allowance of a client that logged in before (LoginThrottle); behind a reverse proxy the client is found in
X-Forwarded-For only when the proxy is trusted (TrustedProxies). A request for a host name the dashboard
does not answer to (DNS rebinding) and a command from an origin it does not know are refused
(HostAllowlist).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
import stat
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_BYTES = 4096


class PasswordFileError(ValueError):
    """The password file cannot be used; the message says why."""


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def read_password_file(path: str | Path, create: bool = False) -> tuple[bytes, list[str]]:
    """Return the digest of the password in `path` and warnings about the file.

    With `create`, a missing file is made (mode 0600) holding a random token, and the warning says so.
    """
    file = Path(path).expanduser()
    warnings: list[str] = []
    if create and not file.exists():
        file.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(24) + "\n")
        warnings.append(f"created {file} with a random password (mode 0600): read it there to log in")
    try:
        size = file.stat().st_size
        if size > MAX_PASSWORD_BYTES:
            raise PasswordFileError(f"{file}: {size} bytes; a password file holds one line")
        mode = stat.S_IMODE(file.stat().st_mode)
        password = file.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise PasswordFileError(f"{file}: cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise PasswordFileError(f"{file}: not UTF-8 text") from None
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordFileError(f"{file}: the password must have at least {MIN_PASSWORD_LENGTH} characters, "
                                f"it has {len(password)}")
    if mode & 0o077:
        warnings.append(f"{file} is readable by other users (mode {mode:04o}); chmod 600 it")
    return digest(password), warnings


@dataclass
class Session:
    token: str
    csrf: str
    created: float
    client: str


class Sessions:
    """Logged-in operators, by session token; at most `max_sessions` (the oldest go first)."""

    def __init__(self, password_digest: bytes, lifetime: float = 12 * 3600.0, max_sessions: int = 100,
                 clock=time.monotonic):
        self._digest = password_digest
        self.lifetime = lifetime
        self.max_sessions = max_sessions
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def check_password(self, password: str) -> bool:
        return hmac.compare_digest(digest(password), self._digest)

    def login(self, password: str, client: str) -> Session | None:
        if not isinstance(password, str) or len(password) > MAX_PASSWORD_BYTES or not self.check_password(password):
            return None
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), self._clock(), client)
        self._sessions[session.token] = session
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
        return session

    def get(self, token: str | None) -> Session | None:
        if not token or len(token) > 128:
            return None
        session = self._sessions.get(token)
        if session is None:
            return None
        if self._clock() - session.created > self.lifetime:
            del self._sessions[token]
            return None
        return session

    def logout(self, token: str | None) -> None:
        if token:
            self._sessions.pop(token, None)

    def __len__(self) -> int:
        return len(self._sessions)


def csrf_ok(session: Session, header: str | None) -> bool:
    return isinstance(header, str) and hmac.compare_digest(header.encode(), session.csrf.encode())


class LoginThrottle:
    """Login attempts allowed per `window` seconds: `failures` per client, `total` on the one account.

    An attempt counts from the moment it begins (begin(), before the request's body is read, so attempts
    running at once are all counted) until the window has passed; a right password releases it
    (succeeded()), and so does a request that tried no password (abandoned()). The account-wide `total`
    stops a guesser with many addresses, but only for clients it does not know: a client that logged in
    before (the last `known_clients`, for `known_for` seconds) keeps its own allowance, so strangers cannot
    lock the operator out. Memory stays bounded whatever arrives: at most `max_clients` clients are tracked
    (the least recently seen are forgotten first), and a refused attempt is not recorded.
    """

    def __init__(self, *, failures: int = 5, window: float = 60.0, total: int = 50, max_clients: int = 10_000,
                 known_clients: int = 1000, known_for: float = 30 * 86400.0, clock=time.monotonic):
        self.failures, self.window, self.total = failures, window, total
        self.max_clients, self.known_clients, self.known_for = max_clients, known_clients, known_for
        self.clock = clock
        self._by_client: OrderedDict[str, deque[float]] = OrderedDict()  # attempts counted, least recent first
        self._account: deque[float] = deque()
        self._known: OrderedDict[str, float] = OrderedDict()  # client -> its last login, oldest first

    def _trim(self, times: deque[float], now: float) -> None:
        while times and now - times[0] >= self.window:
            times.popleft()

    def _known_at(self, client: str, now: float) -> bool:
        last = self._known.get(client)
        if last is not None and now - last > self.known_for:
            del self._known[client]
            return False
        return last is not None

    def _wait(self, client: str, now: float) -> float:
        self._trim(self._account, now)
        waits = []
        times = self._by_client.get(client)
        if times is not None:
            self._trim(times, now)
            if not times:
                del self._by_client[client]
            elif len(times) >= self.failures:
                waits.append(self.window - (now - times[0]))
        if len(self._account) >= self.total and not self._known_at(client, now):
            waits.append(self.window - (now - self._account[0]))
        return max(waits, default=0.0)

    def retry_after(self, client: str) -> float:
        """Return the seconds until `client` may try again; 0 when it may now."""
        return self._wait(client, self.clock())

    def known(self, client: str) -> bool:
        """Return whether `client` logged in here within `known_for` seconds."""
        return self._known_at(client, self.clock())

    def begin(self, client: str) -> float:
        """Count an attempt of `client` and return 0; or, when it may not try now, the seconds to wait."""
        now = self.clock()
        wait = self._wait(client, now)
        if wait > 0:
            return wait
        times = self._by_client.pop(client, None) or deque()
        times.append(now)
        self._by_client[client] = times  # last: the most recently seen
        while len(self._by_client) > self.max_clients:
            self._by_client.popitem(last=False)
        self._account.append(now)
        return 0.0

    def succeeded(self, client: str) -> None:
        """Release the attempt `client` began (its password was right) and remember the client."""
        self._release(client)
        self._known.pop(client, None)
        self._known[client] = self.clock()
        while len(self._known) > self.known_clients:
            self._known.popitem(last=False)

    def abandoned(self, client: str) -> None:
        """Release the attempt `client` began without trying a password (a refused or malformed request)."""
        self._release(client)

    def _release(self, client: str) -> None:
        # The client's latest attempt: attempts of one client are alike, only their number counts.
        times = self._by_client.get(client)
        if times:
            began = times.pop()
            try:
                self._account.remove(began)
            except ValueError:  # already out of the window
                pass

    def tracked(self) -> dict[str, int]:
        """Return how many clients, account attempts and known clients are held (all bounded)."""
        return {"clients": len(self._by_client), "attempts": len(self._account), "known": len(self._known)}


class OptionError(ValueError):
    """An option of `qai-hub serve` cannot be used; the message names it."""


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Return the address in `text` (also "[v6]:port" and "v4:port"), IPv4-mapped IPv6 as IPv4; None if none."""
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1:text.index("]")]
    elif text.count(":") == 1:
        text = text.split(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """The reverse proxies whose X-Forwarded-For this server believes, and the client each request is from.

    From a trusted proxy, the client is the right-most X-Forwarded-For address that is not itself a trusted
    proxy (the one the last trusted proxy saw; what is left of it anyone could have written); from any
    other peer, the peer, whatever its headers say.
    """

    def __init__(self, addresses: tuple[str, ...] | list[str] = ()):
        networks = []
        for text in addresses:
            try:
                networks.append(ipaddress.ip_network(text.strip(), strict=False))
            except ValueError:
                raise OptionError(f"--trusted-proxy {text!r}: expected an IP address or a network, e.g. 127.0.0.1 "
                                  "or 10.0.0.0/8") from None
        self.networks = tuple(networks)

    def trusts(self, address: str | None) -> bool:
        """Return whether `address` is one of the trusted proxies."""
        ip = _ip(address) if address else None
        return ip is not None and any(ip in network for network in self.networks)

    def client(self, peer: str | None, forwarded_for: list[str] | tuple[str, ...] = ()) -> str:
        """Return the client's address, given the TCP peer and the request's X-Forwarded-For headers, in order."""
        peer_ip = _ip(peer) if peer else None
        client = str(peer_ip) if peer_ip is not None else (peer or "?")[:64]
        if not self.trusts(peer):
            return client
        hops = [hop for value in forwarded_for for hop in value.split(",") if hop.strip()]
        for hop in reversed(hops):
            address = _ip(hop)
            if address is None:  # not written by a proxy of ours: the last trusted hop is what we know
                return client
            client = str(address)
            if not self.trusts(client):
                return client
        return client


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
DEFAULT_PORTS = {"http": 80, "https": 443}


def host_name(value: str | None) -> str | None:
    """Return the lowercase name in a Host header ("name[:port]", "[v6][:port]"), without the port; None if bad."""
    if not value or len(value) > 300 or any(c in value for c in "/\\@?#% \t"):
        return None
    if value.count(":") > 1 and not value.startswith("["):
        value = f"[{value}]"  # a bare IPv6 address (an option, not a Host header)
    try:
        parts = urlsplit("//" + value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return None
    return parts.hostname or None


def normal_origin(value: str | None) -> str | None:
    """Return `value` as a browser writes an Origin (scheme://host[:port], no default port); None if not one."""
    if not value or len(value) > 300:
        return None
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if (parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.username is not None
            or parts.password is not None or parts.path not in ("", "/") or parts.query or parts.fragment
            or host_name(parts.netloc) != parts.hostname):
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, DEFAULT_PORTS[parts.scheme]) else "")


class HostAllowlist:
    """The names this dashboard answers to (a request's Host header) and the origins it takes commands from.

    Names: the loopback ones (localhost, 127.0.0.1, [::1]), the bind address unless it is 0.0.0.0 or ::, the
    hosts of the --origin URLs and each --allow-host, with any port. A page whose own name was made to
    resolve to this machine (DNS rebinding) sends its own name as Host and is refused. Origins allowed for
    commands and the WebSocket: the --origin URLs, and this server's own origin (Origin's host and port are
    the request's Host) on an allowed name; never one derived from the Host header alone.
    """

    def __init__(self, *, bind: str = "127.0.0.1", origins: tuple[str, ...] = (), allow_hosts: tuple[str, ...] = ()):
        names = set(LOOPBACK_NAMES)
        if bind and bind not in ("0.0.0.0", "::"):
            name = host_name(bind)
            if name is None:
                raise OptionError(f"--bind {bind!r}: expected an address or a host name")
            names.add(name)
        self.origins: set[str] = set()
        for url in origins:
            origin = normal_origin(url)
            if origin is None:
                raise OptionError(f"--origin {url!r}: expected a URL such as https://hub.example.org")
            self.origins.add(origin)
            names.add(urlsplit(origin).hostname)
        for value in allow_hosts:
            name = host_name(value)
            if name is None:
                raise OptionError(f"--allow-host {value!r}: expected a host name or an address, e.g. hub.lan")
            names.add(name)
        self.names = frozenset(names)

    def allows(self, host: str | None) -> bool:
        """Return whether a request with this Host header is for this dashboard."""
        return host_name(host) in self.names

    def origin_ok(self, origin: str | None, host: str | None) -> bool:
        """Return whether a request with this Origin header (None: none sent) and Host header may act here."""
        if origin is None:
            return True  # not a browser, or a same-origin GET; the cookie and the CSRF token still apply
        normal = normal_origin(origin)
        if normal is None:
            return False
        if normal in self.origins:
            return True
        scheme = urlsplit(normal).scheme
        return urlsplit(normal).hostname in self.names and normal_origin(f"{scheme}://{host}") == normal
