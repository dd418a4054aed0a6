"""The README says what the code does: every task kind any engine serves is in its kinds table, with every
parameter its schema takes."""

import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
SOLVER_OPTIONS = {"solver", "backend", "technology_profile", "deadline", "shots", "qaoa_layers", "seed"}


def served_kinds():
    from qai_intelligence.engine import CHECK_ENDURANCE, WATCH_ANOMALIES
    from qai_io.hub.reports import REPORT
    from qai_io.kinds import KindLimits, task_kinds as io_kinds
    from qai_mission.wait_kind import WAIT_KIND
    from qai_quantum_bridge.kinds import Limits, task_kinds as quantum_kinds

    return [("mission_engine", WAIT_KIND), *(("io_engine", k) for k in io_kinds(KindLimits()).values()),
            *(("quantum_bridge", k) for k in quantum_kinds(Limits()).values()),
            ("intelligence_engine", CHECK_ENDURANCE), ("intelligence_engine", WATCH_ANOMALIES), ("hub_link", REPORT)]


def test_the_readme_lists_every_task_kind_with_its_engine_and_parameters():
    rows = {}
    for line in README.splitlines():
        match = re.match(r"\| ((?:`\w+`(?:, )?)+) \| (\w+) \| (.*?) \|", line)
        if match:
            for kind in re.findall(r"`(\w+)`", match.group(1)):
                rows[kind] = (match.group(2), match.group(3))
    for engine, spec in served_kinds():
        assert spec.name in rows, f"README's kinds table lacks {spec.name}"
        documented_engine, parameters = rows[spec.name]
        assert documented_engine == engine, spec.name
        schema = spec.parameters_schema or {}
        for name in schema.get("properties", {}):
            assert f"`{name}`" in parameters or (name in SOLVER_OPTIONS and "solver options" in parameters), \
                f"{spec.name}: parameter {name} is not in README"
        for name in schema.get("required", []):
            assert f"*`{name}`*" in parameters, f"{spec.name}: {name} is required, README does not say so"


def test_the_configuration_reference_is_current():
    """docs/configuration.md is what `qai-edge profile --reference` writes from the nodes' parameter specs."""
    from qai_edge.cli import parameter_reference

    written = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    assert written == parameter_reference(), "regenerate: qai-edge profile --reference > docs/configuration.md"
