"""Runs kernel.py on a golden file's inputs and writes every output it defines, with numpy alone.

usage: python3 check_numpy.py GOLDEN OUT    then: npx tinyseek golden compare GOLDEN OUT
The safetensors format is read and written here directly: 8 bytes of little-endian header length, a JSON header
{name: {dtype, shape, data_offsets}, "__metadata__": {...}}, then the raw little-endian data.
"""
import json
import struct
import sys

import numpy as np

from kernel import int8_linear

DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}


def load(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        raw = data[8 + n + begin:8 + n + end]
        tensors[name] = np.frombuffer(raw, dtype=DTYPES[entry["dtype"]]).reshape(entry["shape"])
    return tensors, metadata


def save(path, tensors):
    names = {np.dtype(v): k for k, v in DTYPES.items()}
    header, chunks, offset = {}, [], 0
    for name, array in sorted(tensors.items(), key=lambda item: -item[1].dtype.itemsize):  # aligned, as writers do
        raw = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": names[array.dtype], "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


golden, metadata = load(sys.argv[1])
config = json.loads(metadata["config"])  # also: component, case, seed, tolerance (JSON)
assert config["scheme"].startswith("int8.g") and not config["activations"], "kernel.py is int8 weights only"
mine = int8_linear(golden["input.x"], golden["param.weight"], int(config["scheme"].split(".g")[1]))

# Every output the golden file holds, or `golden compare` fails naming the missing ones (--outputs picks a subset).
missing = [name for name in golden if name.startswith("output.") and name[len("output."):] not in mine]
if missing:
    sys.exit(f"the kernel gives no {', '.join(missing)}")
save(sys.argv[2], {"input.x": golden["input.x"], **{f"output.{k}": v for k, v in mine.items()}})
