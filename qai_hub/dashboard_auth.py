"""Operator login for the hub's dashboard: the password file, sessions, CSRF tokens, a login throttle.

No rclpy import, no web framework. The password (or a long random token) is read from a file (mode 0600
recommended; a missing default file is created with a random token); a login compares SHA-256 digests
in constant time (hmac.compare_digest), so neither the content nor the length leaks through timing.
A session is a random 256-bit token in an HttpOnly, SameSite=Strict cookie; each session has its own
CSRF token, which every state-changing request must carry in a header (a page on another site can
neither read it nor make the browser send it). Sessions live in memory, expire, and are bounded.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path

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


@dataclass
class LoginThrottle:
    """Failed logins allowed per `window` seconds.

    At most `failures` from one client address, and `total` from all together (a guesser using many
    addresses).
    """

    failures: int = 5
    window: float = 60.0
    total: int = 50
    clock: object = time.monotonic
    _by_client: dict[str, deque] = field(default_factory=dict)
    _all: deque = field(default_factory=deque)

    def _trim(self, times: deque, now: float) -> None:
        while times and now - times[0] > self.window:
            times.popleft()

    def retry_after(self, client: str) -> float:
        """Seconds until `client` may try again; 0 when it may now."""
        now = self.clock()
        self._trim(self._all, now)
        times = self._by_client.get(client, deque())
        self._trim(times, now)
        waits = [self.window - (now - times[0])] if len(times) >= self.failures else []
        if len(self._all) >= self.total:
            waits.append(self.window - (now - self._all[0]))
        return max(waits, default=0.0)

    def failed(self, client: str) -> None:
        now = self.clock()
        if len(self._by_client) > 10000:  # bounded: forget the quiet ones
            for key in [k for k, v in self._by_client.items() if not v or now - v[-1] > self.window]:
                del self._by_client[key]
        self._by_client.setdefault(client, deque()).append(now)
        self._all.append(now)
