"""Signed hub commands: ML-DSA-65 (FIPS 204), optionally hybrid with Ed25519, over canonical bytes. No rclpy import.

A command on the wire is a JSON object:

    {"v": 1, "id": "<request id>", "verb": "submit_mission", "fleet": "demo", "robot": "robot1",
     "timestamp": <milliseconds since the epoch>, "nonce": "<32 hex digits>", "body": {...},
     "signatures": [{"alg": "ML-DSA-65", "key": "<key id>", "sig": "<base64>"},
                    {"alg": "Ed25519", "key": "<key id>", "sig": "<base64>"}]}

Each signature covers DOMAIN + the RFC 8785 canonical JSON of every field above except `signatures`, plus
`topic`, the MQTT topic the command is published to. So a command cannot be moved to another robot's or
verb's topic, nor its body, time, nonce or target changed, without breaking every signature. A key id is
the first 16 hex digits of the SHA-256 of the key's DER SubjectPublicKeyInfo.

The robot holds only public keys (PEM files, several at once so a key can be rotated); a command is
accepted when every signature it carries verifies with a known key, one of them is ML-DSA-65 and, in
hybrid mode, one is Ed25519. Replays are refused by a nonce store that survives restarts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import sqlite3
import stat
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, mldsa

from qai_io.hub.canonical import canonical_json

DOMAIN = b"qai-hub-command/1\n"
VERSION = 1
ML_DSA_65 = "ML-DSA-65"
ED25519 = "Ed25519"
ALGORITHMS = (ML_DSA_65, ED25519)
SIGNED_FIELDS = ("v", "id", "verb", "fleet", "robot", "timestamp", "nonce", "body")
MAX_SIGNATURES = 4
_MAX_SIGNATURE_TEXT = {ML_DSA_65: 4500, ED25519: 100}  # base64 of 3309 and 64 bytes, with room


class SignatureRejected(Exception):
    """A command whose signatures do not do. `code` is one of unsigned, unknown_key, bad_signature."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class KeyFileError(ValueError):
    """A key file that cannot be used; the message names the file and why."""


def key_id(public_key) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


def algorithm_of(key) -> str:
    if isinstance(key, (mldsa.MLDSA65PublicKey, mldsa.MLDSA65PrivateKey)):
        return ML_DSA_65
    if isinstance(key, (ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey)):
        return ED25519
    raise KeyFileError(f"unsupported key type {type(key).__name__} (expected ML-DSA-65 or Ed25519)")


def signed_bytes(command: Mapping[str, Any], topic: str) -> bytes:
    """Return the bytes every signature of `command` covers when it is published to `topic`."""
    fields = {name: command.get(name) for name in SIGNED_FIELDS}
    fields["topic"] = topic
    return DOMAIN + canonical_json(fields)


# -- Keys ------------------------------------------------------------------------------------------

def load_public_key(path: str | Path):
    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except OSError as error:
        raise KeyFileError(f"{path}: cannot read: {error.strerror or error}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as error:
        raise KeyFileError(f"{path}: not a PEM public key ({error})") from None
    algorithm_of(key)
    return key


def load_private_key(path: str | Path):
    """Load a PEM private key file, refusing one that others may read (as ssh does)."""
    path = Path(path).expanduser()
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as error:
        raise KeyFileError(f"{path}: cannot read: {error.strerror or error}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path}: private key is accessible by others (mode {stat.S_IMODE(mode):04o}); "
                           f"run: chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise KeyFileError(f"{path}: not an unencrypted PEM private key ({error})") from None
    algorithm_of(key)
    return key


def generate_key_pair(private_path: str | Path, public_path: str | Path, algorithm: str = ML_DSA_65,
                      overwrite: bool = False) -> str:
    """Write a new key pair (private key mode 0600, created that way) and return its key id."""
    private_path, public_path = Path(private_path).expanduser(), Path(public_path).expanduser()
    key = (mldsa.MLDSA65PrivateKey.generate() if algorithm == ML_DSA_65 else ed25519.Ed25519PrivateKey.generate())
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    private_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        descriptor = os.open(private_path, flags, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{private_path}: exists; refusing to overwrite a private key") from None
    with os.fdopen(descriptor, "wb") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(private_pem)
    public_path.write_bytes(public_pem)
    return key_id(key.public_key())


# -- The hub side: signing ---------------------------------------------------------------------

class Signer:
    """The hub's private keys: an ML-DSA-65 key and, for hybrid signatures, an Ed25519 key."""

    def __init__(self, mldsa_key, ed25519_key=None):
        if algorithm_of(mldsa_key) != ML_DSA_65:
            raise KeyFileError("the first key must be an ML-DSA-65 private key")
        if ed25519_key is not None and algorithm_of(ed25519_key) != ED25519:
            raise KeyFileError("the hybrid key must be an Ed25519 private key")
        self._keys = [(ML_DSA_65, mldsa_key, key_id(mldsa_key.public_key()))]
        if ed25519_key is not None:
            self._keys.append((ED25519, ed25519_key, key_id(ed25519_key.public_key())))

    @classmethod
    def from_files(cls, mldsa_path: str | Path, ed25519_path: str | Path | None = None) -> "Signer":
        return cls(load_private_key(mldsa_path), load_private_key(ed25519_path) if ed25519_path else None)

    @property
    def key_ids(self) -> list[str]:
        return [kid for _, _, kid in self._keys]

    def sign(self, message: bytes) -> list[dict[str, str]]:
        return [{"alg": alg, "key": kid, "sig": base64.b64encode(key.sign(message)).decode("ascii")}
                for alg, key, kid in self._keys]


def make_command(signer: Signer | None, *, fleet: str, robot: str, verb: str, body: Mapping[str, Any],
                 topic: str, timestamp_ms: int | None = None, nonce: str | None = None,
                 request_id: str | None = None) -> dict[str, Any]:
    """Return a command envelope for `topic`, signed by `signer` (None: unsigned, for tests of the refusal)."""
    command = {"v": VERSION, "id": request_id or uuid.uuid4().hex, "verb": verb, "fleet": fleet, "robot": robot,
               "timestamp": int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
               "nonce": nonce or secrets.token_hex(16), "body": dict(body)}
    command["signatures"] = signer.sign(signed_bytes(command, topic)) if signer is not None else []
    return command


# -- The robot side: verifying -----------------------------------------------------------------

@dataclass(frozen=True)
class KnownKey:
    key_id: str
    algorithm: str
    public_key: Any
    source: str


class Keyring:
    """The hub public keys a robot trusts."""

    def __init__(self, keys: Iterable[KnownKey] = ()):
        self.keys = {key.key_id: key for key in keys}

    @classmethod
    def from_files(cls, paths: Iterable[str]) -> tuple["Keyring", list[str], list[str]]:
        """Load every usable key; return the keyring, errors of files that cannot be used, and missing files."""
        keys, errors, missing = [], [], []
        for path in paths:
            if not Path(path).expanduser().exists():
                missing.append(str(path))
                continue
            try:
                public_key = load_public_key(path)
            except KeyFileError as error:
                errors.append(str(error))
                continue
            keys.append(KnownKey(key_id(public_key), algorithm_of(public_key), public_key, str(path)))
        return cls(keys), errors, missing

    def count(self, algorithm: str) -> int:
        return sum(1 for key in self.keys.values() if key.algorithm == algorithm)

    def verify(self, message: bytes, signatures: Any, require_ed25519: bool = False) -> list[str]:
        """Check every signature over `message`; return the key ids that signed, or raise SignatureRejected."""
        if not signatures:
            raise SignatureRejected("unsigned", "the command carries no signature")
        if not isinstance(signatures, list) or len(signatures) > MAX_SIGNATURES:
            raise SignatureRejected("bad_signature", f"signatures: expected a list of at most {MAX_SIGNATURES}")
        signed_by: dict[str, str] = {}
        for index, entry in enumerate(signatures):
            where = f"signatures[{index}]"
            if not isinstance(entry, dict) or set(entry) != {"alg", "key", "sig"}:
                raise SignatureRejected("bad_signature", f"{where}: expected an object with alg, key and sig")
            algorithm, kid, text = entry["alg"], entry["key"], entry["sig"]
            if algorithm not in ALGORITHMS:
                raise SignatureRejected("bad_signature", f"{where}.alg: expected one of {', '.join(ALGORITHMS)}, "
                                        f"got {str(algorithm)[:40]!r}")
            if not isinstance(text, str) or len(text) > _MAX_SIGNATURE_TEXT[algorithm]:
                raise SignatureRejected("bad_signature", f"{where}.sig: expected base64 text of a {algorithm} "
                                        "signature")
            known = self.keys.get(kid) if isinstance(kid, str) else None
            if known is None or known.algorithm != algorithm:
                raise SignatureRejected("unknown_key", f"{where}: {algorithm} key {str(kid)[:40]!r} is not one of "
                                        f"the robot's hub keys")
            try:
                signature = base64.b64decode(text, validate=True)
                known.public_key.verify(signature, message)
            except (InvalidSignature, binascii.Error, ValueError):
                raise SignatureRejected("bad_signature", f"{where}: the {algorithm} signature of key {kid} does "
                                        "not verify") from None
            signed_by[kid] = algorithm
        algorithms = set(signed_by.values())
        if ML_DSA_65 not in algorithms:
            raise SignatureRejected("unsigned", "the command carries no ML-DSA-65 signature")
        if require_ed25519 and ED25519 not in algorithms:
            raise SignatureRejected("unsigned", "hybrid signatures are required: no Ed25519 signature")
        return list(signed_by)


class NonceStore:
    """Nonces of accepted commands, on disk (SQLite, synchronous=FULL), kept until their command expires.

    A nonce is recorded before its command acts, so a replay is refused after a crash or restart too.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY, expires REAL NOT NULL)")
        self._db.execute("CREATE INDEX IF NOT EXISTS nonces_by_expiry ON nonces(expires)")

    def record(self, nonce: str, expires: float, now: float) -> bool:
        """Record `nonce` (kept until `expires`, epoch seconds); False when it was recorded before."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM nonces WHERE expires < ?", (now,))
            try:
                self._db.execute("INSERT INTO nonces (nonce, expires) VALUES (?, ?)", (nonce, expires))
            except sqlite3.IntegrityError:
                return False
        return True

    def __len__(self) -> int:
        return self._db.execute("SELECT count(*) FROM nonces").fetchone()[0]

    def close(self) -> None:
        self._db.close()
