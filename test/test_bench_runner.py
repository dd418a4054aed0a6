"""bench/run_all.py's assembly of one table and bench/results.json, on fake bench scripts (no real bench runs).

The fakes are real processes: one writes figures through qai_edge.figures, one writes a figure then fails,
one hangs (with a child of its own) past its time limit.
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from qai_edge.figures import FigureLog, figure, measure_processes, percentile, snapshot, wait_until

# One worker runs this module: its tests share an expensive module fixture.
pytestmark = pytest.mark.xdist_group("test_bench_runner")

ROOT = Path(__file__).resolve().parents[1]


def load_run_all():
    spec = importlib.util.spec_from_file_location("bench_run_all", ROOT / "bench" / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


run_all = load_run_all()

GOOD = """
    import argparse
    from qai_edge.figures import FigureLog
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--json")
    args = parser.parse_args()
    log = FigureLog(args.json, "mission engine")
    print("usual printed output")
    log.add(f"scheduler per task at size {args.size}, vs py_trees", 7.5, "us", baseline=10.0, ratio=0.75,
            target="ratio <= 1.0", met=True)
    log.add("submit -> start p99", 31.0, "ms", target="< 20 ms", met=False)
    log.add("real-time factor", float("nan"), "x")
"""
FAILING = """
    import argparse, sys
    from qai_edge.figures import FigureLog
    parser = argparse.ArgumentParser()
    parser.add_argument("--json")
    log = FigureLog(parser.parse_args().json, "hub link")
    log.add("throughput, vs raw paho", 3900.0, "msg/s", baseline=6500.0, ratio=0.6, target="ratio >= 0.5", met=True)
    sys.exit("bench: timed out after 30 s waiting for the broker")
"""
HANGING = """
    import argparse, subprocess, sys, time
    from qai_edge.figures import FigureLog
    parser = argparse.ArgumentParser()
    parser.add_argument("--pid-file")
    parser.add_argument("--json")
    args = parser.parse_args()
    log = FigureLog(args.json, "quantum bridge")
    log.add("numba kernel first call, cold cache", 21.0, "s")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    open(args.pid_file, "w").write(str(child.pid))
    time.sleep(120)
"""


def write_script(directory: Path, name: str, body: str) -> str:
    path = directory / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    """Run the three fake scripts through run_all's step runner once; return the results and the child's pid."""
    directory = tmp_path_factory.mktemp("bench")
    pid_file = directory / "child.pid"
    steps = [
        run_all.Step(write_script(directory, "good.py", GOOD), "mission", quick_args=("--size", "10"),
                     args=("--size", "1000"), timeout=30, quick_timeout=30),
        run_all.Step(write_script(directory, "failing.py", FAILING), "hub", timeout=30, quick_timeout=30),
        run_all.Step(write_script(directory, "hanging.py", HANGING), "quantum",
                     quick_args=("--pid-file", str(pid_file)), timeout=2, quick_timeout=2),
    ]
    results = [run_all.run_step(step, True, directory) for step in steps]
    return results, int(pid_file.read_text())


def test_a_script_that_writes_figures_gives_its_records_with_the_quick_options(fake_run):
    results, _ = fake_run
    good = results[0]
    assert good.status == "ok" and good.returncode == 0 and good.error is None
    assert "--size" in good.command and good.command[good.command.index("--size") + 1] == "10"
    assert "usual printed output" in good.output
    names = [r["figure"] for r in good.records]
    assert names == ["scheduler per task at size 10, vs py_trees", "submit -> start p99", "real-time factor"]
    assert all(r["script"] == "good.py" and r["area"] == "mission engine" for r in good.records)
    assert good.records[2]["value"] is None and good.records[2]["met"] is None  # NaN is not a figure


def test_a_failing_script_keeps_its_figures_and_adds_a_row_saying_why(fake_run):
    results, _ = fake_run
    failing = results[1]
    assert failing.status == "failed" and failing.returncode == 1
    assert "waiting for the broker" in failing.error
    records = run_all.collect([failing])
    assert [r["figure"] for r in records] == ["throughput, vs raw paho", "failing.py FAILED"]
    assert records[1]["area"] == "hub link" and "exit 1" in records[1]["error"]


def test_a_script_past_its_time_limit_is_stopped_with_every_process_it_started(fake_run):
    results, child = fake_run
    hanging = results[2]
    assert hanging.status == "timed out" and hanging.returncode is None
    assert 2.0 <= hanging.wall_s < 30.0
    assert hanging.records[0]["figure"] == "numba kernel first call, cold cache"  # written before the time-out
    assert not alive(child)
    assert run_all.collect([hanging])[-1]["error"] == "timed out: stopped after 2 s"


def test_the_table_has_one_row_per_figure_with_target_and_met_and_the_failures(fake_run):
    from rich.console import Console

    results, _ = fake_run
    records = run_all.collect(results)
    rows = run_all.table_rows(records)
    assert rows[0] == ("mission engine", "scheduler per task at size 10, vs py_trees", "7.50 us", "10.0 us",
                       "0.750x", "ratio <= 1.0", "yes")
    assert rows[1][2:] == ("31.0 ms", "-", "", "< 20 ms", "NO")
    assert rows[2][2:] == ("-", "-", "", "", "")
    assert rows[4][0] == "hub link" and rows[4][6] == "ERROR" and "exit 1" in rows[4][2]
    assert rows[-1][1] == "hanging.py TIMED OUT" and rows[-1][6] == "ERROR"
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(run_all.build_table(records, "title"))
    text = console.file.getvalue()
    for expected in ("scheduler per task at size 10", "ratio <= 1.0", "failing.py FAILED", "hanging.py TIMED OUT",
                     "timed out: stopped after 2 s", "quantum bridge"):
        assert expected in text


def test_a_figure_with_95_percent_intervals_shows_them_beside_its_value_and_baseline():
    from qai_edge.figures import figure

    record = figure("intelligence", "endurance MAE", 61.2, "s", baseline=70.5, interval=[55.0, 68.1],
                    baseline_interval=[62.0, 80.25], n=200)
    assert run_all.table_rows([record])[0][2:4] == ("61.2 s [55.0, 68.1]", "70.5 s [62.0, 80.2]")
    assert run_all.table_rows([{**record, "interval": [None, 1.0]}])[0][2] == "61.2 s"
    latency = figure("intelligence", "tick p99", 0.9, "ms", samples=2380, alone_samples=2980)
    assert run_all.table_rows([latency])[0][1] == "tick p99 (2,380 samples; alone 2,980)"


def test_results_json_holds_the_records_the_steps_and_the_machine(fake_run, tmp_path):
    results, _ = fake_run
    load = os.getloadavg()
    document = run_all.results_document(results, run_all.machine_info(load, load), quick=True,
                                        argv=["--quick"], wall_s=12.3)
    path = tmp_path / "results.json"
    run_all.write_results(path, document)
    written = json.loads(path.read_text())  # strict JSON: parse_constant would see NaN
    assert json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the JSON")) == written
    assert [s["status"] for s in written["steps"]] == ["ok", "failed", "timed out"]
    assert written["steps"][0]["command"][-2] == "--json"
    assert len(written["records"]) == 3 + 2 + 2
    machine = written["machine"]
    assert machine["cpu_count"] == os.cpu_count() and len(machine["load_average_before"]) == 3
    assert machine["python"] == sys.version.split()[0] and machine["libraries"]["rich"]
    assert machine["date"].endswith("+00:00")
    table = run_all.markdown(written).splitlines()
    assert "(quick)" in table[0] and "failing.py" in table[0] and "(timed out)" in table[0]
    assert table[4] == "| mission engine | scheduler per task at size 10, vs py_trees | 7.50 us | 10.0 us | 0.750x | " \
                       "ratio <= 1.0 | yes |"
    assert table[5].startswith("|  | submit -> start p99 |") and len(table) == 4 + len(written["records"])


def test_only_selects_areas_or_scripts_and_names_what_it_does_not_know():
    assert {s.script for s in run_all.select_steps(run_all.STEPS, "mission,io")} == {
        "mission_core.py", "mission_ros.py", "io_sim.py"}
    assert [s.script for s in run_all.select_steps(run_all.STEPS, "hub_link")] == ["hub_link.py"]
    assert len(run_all.select_steps(run_all.STEPS, None)) == len(run_all.STEPS)
    with pytest.raises(ValueError, match="gpu is not an area"):
        run_all.select_steps(run_all.STEPS, "io,gpu")


def test_every_area_has_a_script_in_bench_and_every_bench_script_a_step():
    scripts = {p.name for p in (ROOT / "bench").glob("*.py")} - {"run_all.py"}
    assert {s.script for s in run_all.STEPS} == scripts
    assert {s.area for s in run_all.STEPS} == set(run_all.AREAS)


def test_numbers_keep_about_three_significant_digits():
    assert [run_all.format_number(v) for v in (12345.6, 123.4, 12.34, 1.234, 0.01234, 0.00001234, 0.0, None,
                                               math.nan)] == ["12,346", "123", "12.3", "1.23", "0.0123", "1.2e-05",
                                                              "0", "-", "-"]


def test_percentile_is_nearest_rank_and_nan_for_no_sample():
    assert percentile([5.0, 1.0, 3.0], 0.5) == 3.0 and percentile([5.0, 1.0, 3.0], 0.99) == 5.0
    assert percentile([2.0], 0.0) == 2.0 and math.isnan(percentile([], 0.5))


def test_wait_until_ends_the_script_naming_what_it_waited_for():
    wait_until(lambda: True, 0.0, "nothing")
    with pytest.raises(SystemExit, match="timed out after 0.05 s waiting for the broker"):
        wait_until(lambda: False, 0.05, "the broker")


def test_figure_log_rewrites_its_file_after_each_figure(tmp_path):
    path = tmp_path / "figures.json"
    log = FigureLog(path, "I/O")
    assert json.loads(path.read_text()) == []
    log.add("odometry -> cmd_vel p99", 2.5, "ms", target="< 10 ms", met=True)
    assert json.loads(path.read_text()) == [figure("I/O", "odometry -> cmd_vel p99", 2.5, "ms", target="< 10 ms",
                                                   met=True)]
    log.add("real-time factor", math.inf, "x", target=">= 20x", met=False)
    assert json.loads(path.read_text())[1]["value"] is None and json.loads(path.read_text())[1]["met"] is None


def test_measure_processes_reads_cpu_time_share_and_peak_rss_of_live_processes():
    pids = {"this test": os.getpid(), "gone": 2**22 + 1}
    earlier = snapshot(pids)
    assert set(earlier) == {"this test"}
    began, cpu = time.monotonic(), time.process_time()
    while time.process_time() - cpu < 0.2:  # burn 0.2 CPU seconds, however long a loaded machine takes
        sum(range(10000))
    window = time.monotonic() - began
    records = {r["figure"]: r for r in measure_processes(pids, earlier=earlier, window_s=window)}
    assert records["this test: CPU time"]["value"] >= 0.2 and records["this test: CPU time"]["unit"] == "s"
    share = records[f"this test: CPU share over the last {window:g} s"]["value"]
    assert 0.15 / window * 100 <= share <= 0.3 / window * 100
    assert records["this test: peak RSS"]["value"] > 10 and records["this test: peak RSS"]["unit"] == "MiB"
    assert records["gone: process gone"]["value"] is None
