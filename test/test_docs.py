"""The README and docs/ say what the code does.

Every task kind any engine serves is in docs/missions.md's kinds table, with every parameter its schema
takes; the configuration reference is what the parameter specs say; README stays a front page a newcomer
reads in minutes, and every link in README and docs/ leads somewhere.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
MISSIONS = (ROOT / "docs" / "missions.md").read_text()
SOLVER_OPTIONS = {"solver", "backend", "technology_profile", "deadline", "shots", "qaoa_layers", "seed"}


def served_kinds():
    from qai_intelligence.engine import CHECK_ENDURANCE, WATCH_ANOMALIES
    from qai_io.hub_link.reports import REPORT
    from qai_io.kinds import KindLimits, task_kinds as io_kinds
    from qai_mission.wait_kind import WAIT_KIND
    from qai_quantum_bridge.kinds import task_kinds as quantum_kinds
    from qai_quantum_bridge.limits import Limits

    return [("mission_engine", WAIT_KIND), *(("io_engine", k) for k in io_kinds(KindLimits()).values()),
            *(("quantum_bridge", k) for k in quantum_kinds(Limits()).values()),
            ("intelligence_engine", CHECK_ENDURANCE), ("intelligence_engine", WATCH_ANOMALIES), ("hub_link", REPORT)]


def test_the_missions_page_lists_every_task_kind_with_its_engine_and_parameters():
    rows = {}
    for line in MISSIONS.splitlines():
        match = re.match(r"\| ((?:`\w+`(?:, )?)+) \| (\w+) \| (.*?) \|", line)
        if match:
            for kind in re.findall(r"`(\w+)`", match.group(1)):
                rows[kind] = (match.group(2), match.group(3))
    for engine, spec in served_kinds():
        assert spec.name in rows, f"docs/missions.md's kinds table lacks {spec.name}"
        documented_engine, parameters = rows[spec.name]
        assert documented_engine == engine, spec.name
        schema = spec.parameters_schema or {}
        for name in schema.get("properties", {}):
            assert f"`{name}`" in parameters or (name in SOLVER_OPTIONS and "solver options" in parameters), \
                f"{spec.name}: parameter {name} is not in docs/missions.md"
        for name in schema.get("required", []):
            assert f"*`{name}`*" in parameters, f"{spec.name}: {name} is required, docs/missions.md does not say so"


def test_the_configuration_reference_is_current():
    """docs/configuration.md is what `qai-edge profile --reference` writes from the nodes' parameter specs."""
    from qai_edge.cli import parameter_reference

    written = (ROOT / "docs" / "configuration.md").read_text()
    assert written == parameter_reference(), "regenerate: qai-edge profile --reference > docs/configuration.md"


def test_the_readme_is_a_front_page():
    """README.md: what it is, the two commands, the demo, the packages, where to read on; chapters live in docs/."""
    assert len(README.splitlines()) <= 250, "README.md is over 250 lines: move a chapter to docs/"
    commands = re.findall(r"^make (\w+)", README, re.MULTILINE)
    assert commands[:2] == ["demo", "test"], commands
    for package in ("qai_edge", "qai_mission", "qai_quantum_bridge", "qai_intelligence", "qai_io", "qai_sim",
                    "qai_recorder", "qai_hub", "qai_interfaces"):
        assert f"`{package}/`" in README or f"**`{package}/`**" in README, f"README's package map lacks {package}"


def test_every_relative_link_in_readme_and_docs_leads_to_a_file_and_heading_that_exist():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        text = page.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), f"{page.name}: link to {target}: no such file"
            if anchor and linked.suffix == ".md":
                headings = {_anchor(h) for h in re.findall(r"^#+ (.+)$", linked.read_text(), re.MULTILINE)}
                assert anchor in headings, f"{page.name}: link to {target}: no such heading"


def _anchor(heading: str) -> str:
    """Return the anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_figures_in_readme_and_docs_are_the_results_files_they_name_not_typed_by_hand(tmp_path):
    """Every `<!-- figures FILE SCRIPTS -->` block is what bench/run_all.py --update-docs writes from FILE."""
    import importlib.util
    import shutil

    spec = importlib.util.spec_from_file_location("run_all", ROOT / "bench" / "run_all.py")
    run_all = importlib.util.module_from_spec(spec)
    sys.modules["run_all"] = run_all  # its dataclasses look their module up there
    spec.loader.exec_module(run_all)
    blocks = 0
    for path in run_all.doc_files(ROOT):
        blocks += len(run_all.FIGURES.findall(path.read_text()))
        copy = tmp_path / path.relative_to(ROOT)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, copy)
    shutil.copytree(ROOT / "bench" / "published", tmp_path / "bench" / "published")
    changed = run_all.update_docs(run_all.doc_files(tmp_path), root=tmp_path)
    assert not changed, f"stale or hand-edited figures in {changed}: run bench/run_all.py --update-docs"
    assert blocks >= 1
