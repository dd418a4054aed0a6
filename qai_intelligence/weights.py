"""A checkpoint's model.pt read without torch: the running engine's models need numpy arrays, not torch.

No rclpy import, no torch import. model.pt is what `torch.save` writes: a zip holding `<root>/data.pkl` (the
pickled {format, config, state_dict}) and one raw little-endian buffer per tensor storage (`<root>/data/<key>`).
`read` unpickles data.pkl with an unpickler that knows three names only, the ones a state dict of tensors
needs (`collections.OrderedDict`, a typed storage such as `torch.FloatStorage`, `torch._utils._rebuild_tensor_v2`),
and rebuilds each tensor as a numpy array from its storage, checking that it lies inside that storage. Any
other name is refused: as with `torch.load(weights_only=True)`, a checkpoint cannot run code.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

STORAGES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
            "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
            "ByteStorage": np.uint8, "BoolStorage": np.bool_}


MAX_UNPACKED_BYTES = 64 * 1024 * 1024  # our models are kilobytes; torch.save stores its records unpacked


class WeightsError(ValueError):
    """A model.pt this reader cannot take; the message says why."""


class _Storage:
    def __init__(self, dtype, data: bytes):
        self.array = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"))


def _rebuild_tensor(storage: _Storage, offset: int, size, stride, *unused) -> np.ndarray:
    """Rebuild a tensor as numpy (a copy) from its storage, offset, shape and strides (in elements)."""
    size, stride = tuple(int(n) for n in size), tuple(int(n) for n in stride)
    if not isinstance(storage, _Storage) or len(size) != len(stride) or offset < 0 or min(size, default=1) < 0 \
            or min(stride, default=0) < 0:
        raise WeightsError(f"a tensor of shape {size}, strides {stride}, offset {offset}: not a valid layout")
    if math.prod(size) == 0:
        return np.zeros(size, storage.array.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.array.size:
        raise WeightsError(f"a tensor of shape {size} reaches element {last} of a {storage.array.size}-element "
                           "storage")
    itemsize = storage.array.itemsize
    view = np.lib.stride_tricks.as_strided(storage.array[offset:], shape=size,
                                           strides=tuple(s * itemsize for s in stride), writeable=False)
    return np.array(view, dtype=storage.array.dtype.newbyteorder("="))


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str):
        super().__init__(io.BytesIO(data))
        self._archive, self._root = archive, root
        self._storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGES:
            return STORAGES[name]
        raise WeightsError(f"data.pkl names {module}.{name}: not part of a state dict of tensors, refused")

    def persistent_load(self, pid) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and pid[1] in STORAGES.values()
                and isinstance(pid[2], str) and pid[2].isdigit()):
            raise WeightsError(f"data.pkl: an unknown persistent id {str(pid)[:80]}")
        _, dtype, key, _, numel = pid
        if key not in self._storages:
            try:
                data = self._archive.read(f"{self._root}/data/{key}")
            except KeyError:
                raise WeightsError(f"storage {key} missing") from None
            if len(data) != int(numel) * np.dtype(dtype).itemsize:
                raise WeightsError(f"storage {key}: {len(data)} bytes for {numel} {np.dtype(dtype).name} values")
            self._storages[key] = _Storage(dtype, data)
        return self._storages[key]


def read(path: Path) -> Any:
    """Return what model.pt holds, its tensors as numpy arrays; WeightsError when it is not such a file."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [name for name in archive.namelist() if name.endswith("/data.pkl") and name.count("/") == 1]
            if len(pickles) != 1:
                raise WeightsError("not a torch.save zip (no single <root>/data.pkl)")
            unpacked = sum(info.file_size for info in archive.infolist())
            if unpacked > MAX_UNPACKED_BYTES:  # a small file may deflate to gigabytes: refused before reading
                raise WeightsError(f"{unpacked} bytes once unpacked, more than the {MAX_UNPACKED_BYTES} allowed")
            root = pickles[0].split("/")[0]
            if archive.read(f"{root}/byteorder").strip() not in (b"little", b""):
                raise WeightsError("big-endian storages are not read here")
            return _Unpickler(archive.read(pickles[0]), archive, root).load()
    except WeightsError:
        raise
    except KeyError as error:
        raise WeightsError(f"missing {error}") from None
    except (OSError, zipfile.BadZipFile, pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError,
            AttributeError, OverflowError, MemoryError, NotImplementedError, RuntimeError) as error:
        # MemoryError: a length field claiming exabytes; NotImplementedError: a zip version or compression
        # zipfile does not read; RuntimeError: an encrypted entry
        raise WeightsError(f"{type(error).__name__}: {str(error)[:200]}") from None
