"""Signed models (qai_hub.model_signing): what a hub signs over a checkpoint and what a robot accepts.

Plain Python, real ML-DSA-65 keys (made here, in temp dirs) and the real shipped checkpoints.
"""

from __future__ import annotations

import copy
import shutil

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from qai_hub import model_signing
from qai_hub.model_signing import ModelRejected
from qai_hub.protocol import Keyring, SignatureRejected, Signer, generate_key_pair, make_command, signed_bytes
from qai_intelligence import checkpoint
from qai_intelligence.store import SHIPPED, ModelStore
from qai_intelligence.updates import ModelTrust
from qai_io.hub_link.commands import CommandRejected, _check_body


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    directory = tmp_path_factory.mktemp("model_keys")
    generate_key_pair(directory / "hub.key", directory / "hub.pub")
    generate_key_pair(directory / "other.key", directory / "other.pub")
    keyring, errors, missing = Keyring.from_files([str(directory / "hub.pub")])
    assert not errors and not missing
    return {"signer": Signer.from_files(directory / "hub.key"), "other": Signer.from_files(directory / "other.key"),
            "keyring": keyring, "public": str(directory / "hub.pub")}


@pytest.fixture(scope="module")
def endurance():
    return model_signing.read_files(SHIPPED / "endurance")


def test_a_signed_checkpoint_verifies_and_every_change_to_it_is_refused_with_the_reason(keys, endurance):
    document = model_signing.sign(keys["signer"], "endurance", endurance, "test")
    assert model_signing.verify(document, endurance, keys["keyring"], "endurance") == keys["signer"].key_ids

    flipped = dict(endurance, **{"model.pt": endurance["model.pt"][:-1] + bytes([endurance["model.pt"][-1] ^ 1])})
    cases = {
        "tampered": (document, flipped, "endurance", "model.pt: differs from what the hub signed"),
        "other task": (document, endurance, "anomaly", "signed for endurance, not anomaly"),
        "unsigned": ({**document, "signatures": []}, endurance, "endurance", "unsigned"),
        "unknown key": (model_signing.sign(keys["other"], "endurance", endurance), endurance, "endurance",
                        "unknown_key"),
        "manifest edited": (_edited(document, "manifest.task", "anomaly"), endurance, "anomaly", "bad_signature"),
        "extra file": (document, {**endurance, "run.sh": b"#!/bin/sh"}, "endurance", "expected exactly"),
    }
    for name, (doc, files, task, reason) in cases.items():
        with pytest.raises(ModelRejected, match=reason):
            model_signing.verify(doc, files, keys["keyring"], task)
        assert name


def test_a_model_signature_never_passes_as_a_command_signature_nor_the_reverse(keys, endurance):
    """Each signature's domain is its own: a signed manifest moved into a command fails, and the reverse."""
    document = model_signing.sign(keys["signer"], "endurance", endurance)
    topic = "qai/f/r/cmd/get_state"
    command = make_command(keys["signer"], fleet="f", robot="r", verb="get_state", body={}, topic=topic)
    assert keys["keyring"].verify(signed_bytes(command, topic), command["signatures"])
    with pytest.raises(SignatureRejected, match="does not verify"):
        keys["keyring"].verify(signed_bytes(command, topic), document["signatures"])
    with pytest.raises(ModelRejected, match="bad_signature"):
        model_signing.verify({**document, "signatures": command["signatures"]}, endurance, keys["keyring"], "endurance")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda children: st.lists(children, max_size=4)
                    | st.dictionaries(st.text(max_size=10), children, max_size=4), max_leaves=20),
       st.sampled_from(["v", "manifest", "signatures", "manifest.files", "manifest.task", "manifest.files.model.pt"]))
def test_any_damage_to_a_signature_document_is_refused_with_a_reason_and_nothing_else(keys, endurance, junk, where):
    document = model_signing.sign(keys["signer"], "endurance", endurance)
    damaged = _edited(document, where, junk)
    assume(damaged != document)  # e.g. "v" set to 1 again: not damage
    with pytest.raises(ModelRejected) as refused:
        model_signing.verify(damaged, endurance, keys["keyring"], "endurance")
    assert str(refused.value)


def test_a_deploy_body_is_checked_before_anything_runs():
    def reject(code, message):
        return CommandRejected(code, message)

    good = {"task": "endurance", "files": model_signing.encode_files({"meta.json": b"{}", "model.pt": b"x"}),
            "signature": {}}
    _check_body("deploy_model", good, reject)
    for body, reason in (({**good, "task": "weather"}, "body.task"),
                         ({**good, "files": {"meta.json": "e30="}}, "body.files: expected exactly"),
                         ({**good, "files": {"meta.json": "e30=", "model.pt": "not base64!"}}, "not base64"),
                         ({**good, "files": {"meta.json": "A" * 300_000, "model.pt": ""}}, "at most"),
                         ({k: v for k, v in good.items() if k != "signature"}, "body.signature: missing")):
        with pytest.raises(CommandRejected, match=reason) as refused:
            _check_body("deploy_model", body, reject)
        assert refused.value.code == "bad_schema"


def test_the_store_adds_only_a_checkpoint_the_hub_signed_and_keeps_the_signature_with_it(keys, endurance, tmp_path):
    store = ModelStore(tmp_path / "store")
    trust = ModelTrust([keys["public"]])
    unsigned = tmp_path / "unsigned"
    shutil.copytree(SHIPPED / "endurance", unsigned)
    with pytest.raises(checkpoint.CheckpointError, match="unsigned: no hub_signature.json"):
        store.add("endurance", unsigned, verify=trust)
    signed = tmp_path / "signed"
    shutil.copytree(SHIPPED / "endurance", signed)
    document = model_signing.sign(keys["signer"], "endurance", endurance)
    (signed / model_signing.SIGNATURE_FILE).write_bytes(orjson.dumps(document))
    version = store.add("endurance", signed, verify=trust)
    assert (store.path("endurance", version) / model_signing.SIGNATURE_FILE).is_file()
    log = [orjson.loads(line) for line in (tmp_path / "store" / "changes.jsonl").read_text().splitlines()]
    assert "signed by the hub" in log[-1]["trust"]
    # A version already in the store needs no signature; without any hub key, nothing from outside is taken.
    assert store.add("endurance", store.path("endurance", "v0001"), verify=trust)
    with pytest.raises(checkpoint.CheckpointError, match="no hub key"):
        store.add("endurance", signed, verify=ModelTrust([str(tmp_path / "missing.pub")]))
    assert store.add("endurance", unsigned, verify=ModelTrust([], unsigned=True))
    assert not list((tmp_path / "store" / "endurance").glob(".*.tmp"))  # no staging left by a refusal


def _edited(document, where, value):
    edited = copy.deepcopy(document)
    target, *path = where.split(".", 1)
    if not path:
        edited[target] = value
        return edited
    node = edited[target]
    keys = path[0].split(".", 1) if not path[0].startswith("files.") else ["files", path[0][len("files."):]]
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    return edited
