"""Signed models: what a hub signs over a checkpoint it deploys, and how a robot checks it. No rclpy import.

A checkpoint (qai_intelligence.checkpoint: `model.pt` and `meta.json`) deployed from a hub carries a
signature document, `hub_signature.json` beside the two files:

    {"v": 1,
     "manifest": {"task": "endurance" | "anomaly" | "policy", "signed_at": epoch ms, "note": str,
                  "files": {"meta.json": {"sha256": hex, "bytes": n}, "model.pt": {"sha256": hex, "bytes": n}}},
     "signatures": [{"alg": "ML-DSA-65", "key": "<key id>", "sig": "<base64>"}, ...]}

Every signature covers MODEL_DOMAIN followed by the canonical JSON (qai_hub.protocol.canonical_json) of the
manifest, made with the hub's command keys (qai_hub.protocol.Signer). Its own domain keeps a model signature
from ever passing as a command's, and the reverse. A robot takes the checkpoint only when every signature
verifies with a hub key it holds (one of them ML-DSA-65, as for commands), the manifest names the task it is
asked to load, and the files are exactly the manifest's, byte for byte (size and SHA-256): one changed byte
of either file, a file added or missing, another task, a key the robot does not hold, all are refused with
the reason. The signature says who made the model, not that it is good: the robot's promotion gate still
decides whether it flies. The deploy_model command (qai_hub.protocol) carries the files and this document.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from pathlib import Path
from typing import Any, Mapping

import orjson

from qai_hub.protocol import Keyring, Signer, SignatureRejected, canonical_json

MODEL_DOMAIN = b"qai-model/1\n"
SIGNATURE_FILE = "hub_signature.json"
FILES = ("meta.json", "model.pt")
TASKS = ("endurance", "anomaly", "policy")
MAX_MODEL_BYTES = 192 * 1024  # both files together: our models are tens of kilobytes
MAX_DOCUMENT_BYTES = 32 * 1024
MAX_NOTE = 200
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ModelRejected(Exception):
    """A checkpoint whose signature does not do; the message says why."""


def manifest(task: str, files: Mapping[str, bytes], note: str = "", now: float | None = None) -> dict[str, Any]:
    """Return the manifest of a checkpoint's files for `task` (what a hub signs)."""
    return {"task": task, "signed_at": int((time.time() if now is None else now) * 1000), "note": note[:MAX_NOTE],
            "files": {name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
                      for name, data in sorted(files.items())}}


def signed_bytes(manifest_: Mapping[str, Any]) -> bytes:
    return MODEL_DOMAIN + canonical_json(manifest_)


def sign(signer: Signer, task: str, files: Mapping[str, bytes], note: str = "") -> dict[str, Any]:
    """Return the signature document of a checkpoint's files (after checking they are a checkpoint's)."""
    _check_files(files)
    if task not in TASKS:
        raise ModelRejected(f"task: expected one of {', '.join(TASKS)}, got {task[:40]!r}")
    content = manifest(task, files, note)
    return {"v": 1, "manifest": content, "signatures": signer.sign(signed_bytes(content))}


def read_files(directory: str | Path) -> dict[str, bytes]:
    """Read a checkpoint's two files (bounded: nothing larger than MAX_MODEL_BYTES is read)."""
    directory = Path(directory).expanduser()
    files = {}
    for name in FILES:
        path = directory / name
        try:
            size = path.stat().st_size
            if size > MAX_MODEL_BYTES:
                raise ModelRejected(f"{path}: {size} bytes, more than the {MAX_MODEL_BYTES} a deployed model may have")
            files[name] = path.read_bytes()
        except OSError as error:
            raise ModelRejected(f"{path}: cannot read: {error.strerror or error}") from None
    _check_files(files)
    return files


def read_document(directory: str | Path) -> dict[str, Any]:
    """Read a checkpoint's signature document (ModelRejected when it is missing or not a JSON object)."""
    path = Path(directory).expanduser() / SIGNATURE_FILE
    try:
        if path.stat().st_size > MAX_DOCUMENT_BYTES:
            raise ModelRejected(f"{path}: larger than {MAX_DOCUMENT_BYTES} bytes")
        document = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise ModelRejected(f"unsigned: no {SIGNATURE_FILE} (a checkpoint from outside the robot's store must be "
                            "signed by the hub: qai-hub deploy-model)") from None
    except OSError as error:
        raise ModelRejected(f"{path}: cannot read: {error.strerror or error}") from None
    except orjson.JSONDecodeError as error:
        raise ModelRejected(f"{path}: not JSON ({error})") from None
    if not isinstance(document, dict):
        raise ModelRejected(f"{path}: expected a JSON object")
    return document


def verify(document: Any, files: Mapping[str, bytes], keyring: Keyring, task: str,
           require_ed25519: bool = False) -> list[str]:
    """Check a signature document against the files and the task; return the signing key ids or raise ModelRejected."""
    if not isinstance(document, dict) or set(document) != {"v", "manifest", "signatures"}:
        raise ModelRejected("signature: expected an object with v, manifest and signatures")
    if document["v"] != 1 or isinstance(document["v"], bool):
        raise ModelRejected(f"signature.v: expected 1, got {str(document['v'])[:20]}")
    content = document["manifest"]
    _check_manifest(content)
    try:
        signed_by = keyring.verify(signed_bytes(content), document["signatures"], require_ed25519)
    except SignatureRejected as error:
        raise ModelRejected(f"signature: {error.code}: {error.message}") from None
    except ValueError as error:  # canonical_json: a value JSON cannot sign
        raise ModelRejected(f"signature.manifest: {error}") from None
    if content["task"] != task:
        raise ModelRejected(f"signature.manifest.task: signed for {content['task']}, not {task}")
    _check_files(files)
    for name in FILES:
        expected, data = content["files"][name], files[name]
        if len(data) != expected["bytes"] or hashlib.sha256(data).hexdigest() != expected["sha256"]:
            raise ModelRejected(f"{name}: differs from what the hub signed ({len(data)} bytes, "
                                f"{expected['bytes']} signed): tampered or damaged")
    return signed_by


def verify_directory(directory: str | Path, keyring: Keyring, task: str, require_ed25519: bool = False) -> list[str]:
    """Check a checkpoint directory's files against its signature document; return the signing key ids."""
    document = read_document(directory)
    return verify(document, read_files(directory), keyring, task, require_ed25519)


def encode_files(files: Mapping[str, bytes]) -> dict[str, str]:
    return {name: base64.b64encode(data).decode("ascii") for name, data in files.items()}


def decode_files(value: Any) -> dict[str, bytes]:
    """Return a deploy_model body's files (base64 text by name); ModelRejected names what does not fit."""
    if not isinstance(value, dict) or set(value) != set(FILES):
        raise ModelRejected(f"files: expected exactly {', '.join(FILES)} (base64)")
    files, total = {}, 0
    for name in FILES:
        text = value[name]
        if not isinstance(text, str) or len(text) > 4 * MAX_MODEL_BYTES // 3 + 4:
            raise ModelRejected(f"files.{name}: expected base64 text of at most {MAX_MODEL_BYTES} bytes")
        try:
            files[name] = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ModelRejected(f"files.{name}: not base64") from None
        total += len(files[name])
    if total > MAX_MODEL_BYTES:
        raise ModelRejected(f"files: {total} bytes, more than the {MAX_MODEL_BYTES} a deployed model may have")
    return files


def _check_files(files: Mapping[str, bytes]) -> None:
    if set(files) != set(FILES):
        raise ModelRejected(f"files: expected exactly {', '.join(FILES)}, got {', '.join(sorted(files))[:80]}")
    total = sum(len(data) for data in files.values())
    if total > MAX_MODEL_BYTES:
        raise ModelRejected(f"files: {total} bytes, more than the {MAX_MODEL_BYTES} a deployed model may have")


def _check_manifest(content: Any) -> None:
    where = "signature.manifest"
    if not isinstance(content, dict) or set(content) != {"task", "signed_at", "note", "files"}:
        raise ModelRejected(f"{where}: expected an object with task, signed_at, note and files")
    if content["task"] not in TASKS:
        raise ModelRejected(f"{where}.task: expected one of {', '.join(TASKS)}, got {str(content['task'])[:40]!r}")
    if not isinstance(content["signed_at"], int) or isinstance(content["signed_at"], bool):
        raise ModelRejected(f"{where}.signed_at: expected epoch milliseconds")
    if not isinstance(content["note"], str) or len(content["note"]) > MAX_NOTE:
        raise ModelRejected(f"{where}.note: expected text of at most {MAX_NOTE} characters")
    files = content["files"]
    if not isinstance(files, dict) or set(files) != set(FILES):
        raise ModelRejected(f"{where}.files: expected exactly {', '.join(FILES)}")
    for name in FILES:
        entry = files[name]
        if (not isinstance(entry, dict) or set(entry) != {"sha256", "bytes"}
                or not isinstance(entry["sha256"], str) or not _SHA256.match(entry["sha256"])
                or not isinstance(entry["bytes"], int) or isinstance(entry["bytes"], bool)
                or not 0 <= entry["bytes"] <= MAX_MODEL_BYTES):
            raise ModelRejected(f"{where}.files.{name}: expected {{sha256: 64 hex digits, "
                                f"bytes: 0..{MAX_MODEL_BYTES}}}")
