"""The architecture as a test: import-linter's contracts (.importlinter) hold, and they name every core module.

The contracts: the shared base imports no engine; engines cross only through declared shared modules; the
hub imports no ROS; the wire protocol stands alone; every core module imports no rclpy, directly or not;
no import cycle inside a package.
"""

import configparser
import re
import subprocess
from pathlib import Path

import pytest

from harness import tool

ROOT = Path(__file__).resolve().parents[1]


def contracts() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(ROOT / ".importlinter")
    return parser


@pytest.mark.linter
def test_every_import_contract_is_kept():
    result = subprocess.run([tool("lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                            timeout=240)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    kept = re.search(r"Contracts: (\d+) kept, (\d+) broken", result.stdout)
    assert kept and int(kept.group(2)) == 0 and int(kept.group(1)) == len(
        [s for s in contracts().sections() if s.startswith("importlinter:contract:")])


def test_every_module_that_says_it_has_no_rclpy_is_held_to_it_by_a_contract():
    """A module whose docstring promises "No rclpy import" is in the contract that checks it (or in qai_hub)."""
    checked = contracts()["importlinter:contract:cores-import-no-rclpy"]["source_modules"].split()
    unchecked = []
    for path in sorted(ROOT.glob("qai_*/**/*.py")):
        if "qai_interfaces" in path.parts or path.parts[len(ROOT.parts)] == "qai_hub":
            continue
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        docstring = path.read_text().split('"""')[1] if path.read_text().startswith('"""') else ""
        covered = any(module == name or module.startswith(name + ".") for name in checked)
        if "No rclpy import" in docstring and not covered:
            unchecked.append(module)
    assert not unchecked, f"say 'No rclpy import' but no contract checks it: {unchecked}"


def test_the_contracts_name_only_modules_that_exist():
    """A renamed module must not leave a contract checking nothing (import-linter skips missing sources)."""
    parser = contracts()
    for section in parser.sections():
        for key in ("source_modules", "forbidden_modules", "modules", "ancestors"):
            for name in parser[section].get(key, "").split():
                if name.startswith("qai_"):
                    parts = name.split(".")
                    path = ROOT.joinpath(*parts)
                    assert path.is_dir() or path.with_suffix(".py").is_file(), f"{section}: {name} does not exist"
