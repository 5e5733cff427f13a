"""The same as check_numpy.py, with the safetensors package reading and writing the files (pip install safetensors).

usage: python3 check_safetensors.py GOLDEN OUT    then: npx tinyseek golden compare GOLDEN OUT
"""
import json
import sys

from safetensors import safe_open
from safetensors.numpy import save_file

from kernel import int8_linear

with safe_open(sys.argv[1], "np") as f:
    metadata = f.metadata()  # component, case, config (JSON), seed, tolerance (JSON), ...
    golden = {name: f.get_tensor(name) for name in f.keys()}

config = json.loads(metadata["config"])
assert config["scheme"].startswith("int8.g") and not config["activations"], "kernel.py is int8 weights only"
mine = int8_linear(golden["input.x"], golden["param.weight"], int(config["scheme"].split(".g")[1]))

missing = [name for name in golden if name.startswith("output.") and name[len("output."):] not in mine]
if missing:
    sys.exit(f"the kernel gives no {', '.join(missing)}")
save_file({"input.x": golden["input.x"], **{f"output.{k}": v for k, v in mine.items()}}, sys.argv[2])
