"""qai-train is deterministic: the same command gives the same weights, bit for bit.

A `--quick` endurance model is trained twice by the real command-line tool, in two processes; both must be
byte-identical, and identical to the one the same command made when the reference was recorded (where the
code, the libraries and the CPU are the same: floating-point kernels differ between instruction sets, so a
reference from another CPU is not a claim about this one). Each checkpoint says where it was made.

Record the reference (after a change that is meant to change the weights):

    .venv/bin/python test/test_training_determinism.py --record
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

REFERENCE = Path(__file__).parent / "data" / "quick_training.json"
COMMAND = ["endurance", "--quick", "--seed", "0"]


def train(out: Path) -> dict:
    """Run qai-train COMMAND into `out` in its own process; return the checkpoint's meta.json."""
    done = subprocess.run([sys.executable, "-m", "qai_intelligence.cli", *COMMAND, "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads((out / "meta.json").read_text())


def same_environment(meta: dict, reference: dict) -> bool:
    """Say whether `meta` was made on the reference's CPU, Python and libraries."""
    keys = ("cpu", "machine", "python")
    return all(meta["made_on"][k] == reference["made_on"][k] for k in keys) and \
        meta["libraries"] == reference["libraries"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("quick")
    return [(root / name, train(root / name)) for name in ("first", "second")]


def test_the_same_command_twice_gives_the_same_weights_bit_for_bit(two_runs):
    (first, meta1), (second, meta2) = two_runs
    assert (first / "model.pt").read_bytes() == (second / "model.pt").read_bytes()
    assert meta1["sha256"] == meta2["sha256"] and meta1["metrics"] == meta2["metrics"]
    made_on = meta1["made_on"]
    assert made_on["git_commit"] and made_on["python"].split()[1] == ".".join(map(str, sys.version_info[:3]))
    assert made_on["cpu"] and made_on["machine"]


def test_the_weights_are_the_ones_the_same_command_made_before(two_runs):
    reference = json.loads(REFERENCE.read_text())
    assert reference["command"] == COMMAND
    _, meta = two_runs[0]
    if not same_environment(meta, reference):
        pytest.skip(f"the reference was made on {reference['made_on']['cpu']}, Python "
                    f"{reference['made_on']['python']}, {reference['libraries']}; this is {meta['made_on']['cpu']}, "
                    f"Python {meta['made_on']['python']}, {meta['libraries']}")
    assert meta["sha256"] == reference["sha256"], \
        f"qai-train {' '.join(COMMAND)} made other weights than at {reference['made_on']['git_commit']}"


def record() -> None:
    """Train once and write the reference (sha256 of model.pt, where it was made)."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        meta = train(Path(scratch) / "quick")
    REFERENCE.parent.mkdir(exist_ok=True)
    REFERENCE.write_text(json.dumps({"command": COMMAND, "sha256": meta["sha256"], "made_on": meta["made_on"],
                                     "libraries": meta["libraries"]}, indent=2, sort_keys=True) + "\n")
    print(f"wrote {REFERENCE}: {meta['sha256']}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit(__doc__)
    record()
