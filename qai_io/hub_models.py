"""Run verified deploy_model and rollback_model commands on the intelligence engine, from hub_link's executor.

deploy_model: the checkpoint's own hub signature (qai_hub.model_signing) is checked here first, with the
hub keys that checked the command (a refusal is answered `rejected`, reason model_refused, and nothing is
written); the files and the signature document are written to a directory of their own under the robot's
data directory, the intelligence engine's `activate_model` is called with it (the engine checks the
signature again, on its own copy, and runs its promotion gate), and the directory is removed. The answer
is `succeeded` when the model became active, `failed` when the gate (or the engine's own checks) kept the
active one, each with `model`: the gate's figures and the versions. rollback_model calls `rollback_model`.
One model change at a time: another that arrives meanwhile is refused (engine_unavailable), never queued.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any, Callable

import orjson
from rclpy.node import Node

from qai_hub import model_signing
from qai_hub.protocol import Keyring
from qai_interfaces.srv import ActivateModel, RollbackModel
from qai_io.hub_link.commands import Command
from qai_io.hub_missions import AsyncWaits, Reply

MAX_METRICS = 16
MAX_METRIC_TEXT = 2000  # characters of one gate figure's JSON in a reply (its per-flight list is cut)


class ModelCommands(AsyncWaits):
    def __init__(self, node: Node, reply: Reply, keyring: Callable[[], Keyring], directory: Path, *,
                 engine: str, timeout: float, update_timeout: float, require_ed25519: bool):
        self._node = node
        self._reply = reply
        self._keyring = keyring
        self._directory = directory
        self._timeout = timeout
        self._update_timeout = update_timeout
        self._require_ed25519 = require_ed25519
        self._activate = node.create_client(ActivateModel, f"{engine}/activate_model")
        self._rollback = node.create_client(RollbackModel, f"{engine}/rollback_model")
        self.busy = False
        shutil.rmtree(directory, ignore_errors=True)  # what a killed deploy left

    def run(self, command: Command) -> None:
        if self.busy:
            self._reply(command, "rejected", reason="engine_unavailable",
                        message="another model change is in progress; send it again when it is answered")
            return
        self.busy = True
        handler = self._deploy if command.verb == "deploy_model" else self._roll_back
        self._node.executor.create_task(self._guarded, self._done_after(handler), command)

    def _done_after(self, handler):
        async def run(command: Command) -> None:
            try:
                await handler(command)
            finally:
                self.busy = False
        return run

    async def _deploy(self, command: Command) -> None:
        task, document = command.body["task"], command.body["signature"]
        try:
            files = model_signing.decode_files(command.body["files"])
            signed_by = model_signing.verify(document, files, self._keyring(), task, self._require_ed25519)
        except model_signing.ModelRejected as error:
            self._reply(command, "rejected", reason="model_refused", message=str(error))
            return
        directory = self._directory / re.sub(r"[^A-Za-z0-9_-]", "_", f"{command.id}-{command.nonce[:16]}")
        try:
            directory.mkdir(parents=True)
            for name, data in files.items():
                (directory / name).write_bytes(data)
            (directory / model_signing.SIGNATURE_FILE).write_bytes(orjson.dumps(document))
        except OSError as error:
            shutil.rmtree(directory, ignore_errors=True)
            self._reply(command, "rejected", reason="unavailable",
                        message=f"cannot write the checkpoint to {directory}: {error.strerror or error}")
            return
        self._node.get_logger().info(f"command {command.id}: {task} model signed by {', '.join(signed_by)}, "
                                     "to the promotion gate")
        try:
            response = await self._call(command, self._activate, ActivateModel.Request(
                model=task, checkpoint=str(directory)))
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        if response is not None:
            metrics = {kv.key: _compact(kv.value) for kv in response.metrics[:MAX_METRICS]}
            self._answer(command, response.activated, response, metrics)

    async def _roll_back(self, command: Command) -> None:
        response = await self._call(command, self._rollback, RollbackModel.Request(model=command.body["task"]))
        if response is not None:
            self._answer(command, response.success, response, {})

    def _answer(self, command: Command, done: bool, response, metrics: dict[str, str]) -> None:
        model: dict[str, Any] = {"task": command.body["task"], "activated": bool(done),
                                 "active_version": response.active_version,
                                 "previous_version": response.previous_version, "metrics": metrics}
        self._reply(command, "succeeded" if done else "failed", message=response.message, model=model)

    async def _call(self, command: Command, client, request):
        """Call the intelligence engine; None (answered engine_unavailable) when it is not there or silent."""
        if not await self._wait_until(client.service_is_ready):
            self._reply(command, "rejected", reason="engine_unavailable",
                        message=f"the intelligence engine's {client.srv_name} service is not available "
                                f"(waited {self._timeout:g} s)")
            return None
        future = client.call_async(request)
        if not await self._wait_for(future, self._update_timeout):
            client.remove_pending_request(future)
            self._reply(command, "rejected", reason="engine_unavailable",
                        message=f"{client.srv_name} did not answer within {self._update_timeout:g} s")
            return None
        return future.result()


def _compact(text: str) -> str:
    """Fit one gate figure (JSON text) in MAX_METRIC_TEXT: its long lists (scores per flight) left out first."""
    if len(text) <= MAX_METRIC_TEXT:
        return text
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text[:MAX_METRIC_TEXT]
    if isinstance(value, dict):
        value = {key: f"{len(item)} values, left out" if isinstance(item, list) and len(item) > 8 else item
                 for key, item in value.items()}
        text = orjson.dumps(value).decode()
    return text if len(text) <= MAX_METRIC_TEXT else orjson.dumps({"left_out": f"{len(text)} characters"}).decode()
