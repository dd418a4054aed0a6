"""System figures: what each process of a simulated drone's stack costs, idle and in a survey, before and after.

The stack is the demo's (qai_edge.demo, one drone): `qai-edge up` on a profile made from config/edge.yaml
(every engine its own process under the supervisor, the simulated vehicle), the locked mosquitto, and the
hub as qai_hub.session over MQTT. Per process (the supervisor, each node, the broker) it measures:
- start-up: the supervisor's process start to its "all N nodes healthy" line;
- idle: the share of one core over `--idle` seconds with the drone on the ground and every sensor streaming,
  after every node is OK and 5 s of settling;
- survey: the share of one core over the demo's standard survey (4 points: plan on the quantum bridge, take
  off, fly and scan each, report, return home), from sending it to its signed final reply;
- peak RSS (VmHWM) at the end.
The whole stack without the simulator (the budget of issue 22: a companion computer runs the engines, not a
simulator) is summed for each figure.

Before and after in the same run: the same measurement runs on the code of `--baseline` (a commit, default
the last one before the edge-budget work; its tree is taken with `git archive` into a temporary directory and
put first on PYTHONPATH, so the same venv runs the old engines, supervisor and demo) and on this checkout,
alternating for `--rounds` pairs (the machine's speed drifts); each figure is the median over the rounds,
printed beside its baseline and the ratio. `--baseline none` measures only this
checkout (a clone without that commit does the same, and says so).

    .venv/bin/python bench/system.py [--idle 30] [--rounds 3] [--baseline REF|none] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "911ed63c6a1eebbe942ee547e29f53804508b354"  # the last commit before the edge budget (issue 22)
STARTED = re.compile(r"\[qai-edge\] (\w+) started \(pid (\d+)\)")
HEALTHY = re.compile(r"\[qai-edge\] all \d+ nodes healthy")
SIMULATOR = "sim_vehicle"
SUPERVISOR = "qai-edge up (supervisor)"
BROKER = "mosquitto (MQTT broker)"
NUMBA_KERNEL = Path("qai_quantum_bridge") / "_diagonal_numba.py"


def _uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def _started_at(pid: int) -> float:
    """Seconds after boot at which `pid` started (/proc/<pid>/stat, field 22)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _pids(log: Path) -> dict[str, int]:
    found = {}
    for line in log.read_text(errors="replace").splitlines():
        if match := STARTED.search(line):
            found[match.group(1)] = int(match.group(2))
    return found


def measure(idle: float, survey_timeout: float) -> dict:
    """Bring the demo's stack up, measure it idle and through one survey, stop it; return the figures."""
    import qai_edge
    from qai_edge.demo import SURVEY_POINTS, Demo
    from qai_edge.figures import snapshot
    from qai_hub import survey

    arguments = argparse.Namespace(robots=1, points=4, faults=False, controller="pid", scan_seconds=2.0,
                                   timeout=180.0, summary_json=None, keep_dir=False, dashboard_port=-1, linger=0.0,
                                   screenshot=None)
    demo = Demo(arguments)
    result: dict = {"code": qai_edge.__file__}
    try:
        demo.set_up()
        robot = demo.robots[0]
        deadline = time.monotonic() + 120.0
        while not HEALTHY.search(robot.log.read_text(errors="replace")):
            if time.monotonic() > deadline or robot.process.poll() is not None:
                raise SystemExit(f"the stack never got healthy; its log ends:\n{robot.log.read_text()[-3000:]}")
            time.sleep(0.02)
        result["startup_s"] = _uptime() - _started_at(robot.pid)
        if not demo.wait_ready():
            raise SystemExit("the hub never saw every node OK")
        pids = {SUPERVISOR: robot.pid, **_pids(robot.log)}
        broker = getattr(demo.broker, "process", None)
        if broker is not None:
            pids[BROKER] = broker.pid
        time.sleep(5.0)
        before = snapshot(pids)
        time.sleep(idle)
        after_idle = snapshot(pids)
        mission = survey.survey_mission(SURVEY_POINTS[:arguments.points], robot.home, name="bench-survey",
                                        scan_seconds=arguments.scan_seconds)
        began = time.monotonic()
        request = demo.session.send(robot.name, "submit_mission", {"mission": mission})
        if not demo.session.wait(lambda: demo.session.final_reply(request) is not None, survey_timeout):
            raise SystemExit(f"no answer to the survey within {survey_timeout:g} s")
        survey_s = time.monotonic() - began
        after_survey = snapshot(pids)
        reply = demo.session.final_reply(request)
        result.update(survey_s=survey_s, survey_status=reply.get("status"), idle_s=idle, processes={})
        for name in pids:
            if name not in before or name not in after_idle or name not in after_survey:
                result["processes"][name] = None  # it exited (a restart is a fault worth seeing)
                continue
            result["processes"][name] = {
                "idle": (after_idle[name].cpu_seconds - before[name].cpu_seconds) / idle * 100,
                "survey": (after_survey[name].cpu_seconds - after_idle[name].cpu_seconds) / survey_s * 100,
                "rss": after_survey[name].peak_rss_bytes / 2**20}
        return result
    finally:
        demo.tear_down()


def baseline_tree(ref: str, directory: Path) -> Path | None:
    """Extract the tree of commit `ref` into `directory`; None when this clone does not have it."""
    try:
        archive = subprocess.run(["git", "archive", "--format=tar", ref], cwd=ROOT, capture_output=True, check=True,
                                 timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True, timeout=60)
    # The QAOA kernel's numba cache (make setup compiled it) serves the old tree too when the kernel is the
    # same file: numba keys its cache on the source's modification time and size, next to the source.
    old, new = directory / NUMBA_KERNEL, ROOT / NUMBA_KERNEL
    if old.is_file() and new.is_file() and old.read_bytes() == new.read_bytes():
        cache = new.parent / "__pycache__"
        (old.parent / "__pycache__").mkdir(exist_ok=True)
        for entry in cache.glob(f"{NUMBA_KERNEL.stem}.*.nb[ic]"):
            shutil.copy2(entry, old.parent / "__pycache__" / entry.name)
        stat = new.stat()
        os.utime(old, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return directory


def run_measurement(label: str, tree: Path | None, args) -> dict:
    """Run `measure` in a child process, on the code of `tree` (None: this checkout)."""
    environment = dict(os.environ)
    if tree is not None:
        environment["PYTHONPATH"] = os.pathsep.join([str(tree), *filter(None, [environment.get("PYTHONPATH")])])
    with tempfile.NamedTemporaryFile(suffix=".json") as output:
        print(f"{label}: bringing the stack up ({'code of ' + args.baseline[:12] if tree else 'this checkout'})",
              flush=True)
        subprocess.run([sys.executable, __file__, "--measure-into", output.name, "--idle", str(args.idle),
                        "--survey-timeout", str(args.survey_timeout)], env=environment, check=True, cwd=ROOT,
                       timeout=args.idle + args.survey_timeout + 400)
        result = json.loads(Path(output.name).read_text())
    code = result["code"]
    if not code.startswith(str(tree or ROOT)):  # else the comparison would mean nothing
        raise SystemExit(f"the {label} run imported {code}, not {tree or ROOT}")
    print(f"  up to every node OK {result['startup_s']:.2f} s; survey {result['survey_status']} in "
          f"{result['survey_s']:.0f} s", flush=True)
    return result


def combine(results: list[dict]) -> dict:
    """One result from several rounds: each figure's median (a process that exited in any round: None)."""
    combined = dict(results[-1])
    for key in ("startup_s", "survey_s"):
        combined[key] = statistics.median(r[key] for r in results)
    combined["processes"] = {}
    for name in results[-1]["processes"]:
        rounds = [r["processes"].get(name) for r in results]
        combined["processes"][name] = None if any(v is None for v in rounds) else {
            key: statistics.median(v[key] for v in rounds) for key in ("idle", "survey", "rss")}
    combined["survey_status"] = "succeeded" if all(r["survey_status"] == "succeeded" for r in results) else \
        ", ".join(str(r["survey_status"]) for r in results)
    combined["rounds"] = len(results)
    return combined


def totals(result: dict) -> dict[str, float]:
    """Sum each figure over the stack without the simulator."""
    processes = [v for name, v in result["processes"].items() if name != SIMULATOR and v is not None]
    return {key: sum(p[key] for p in processes) for key in ("idle", "survey", "rss")}


def report(before: dict | None, after: dict, log) -> None:
    from qai_edge.figures import figure

    def add(name: str, value, unit: str, base, target: str | None = None, met: bool | None = None) -> None:
        ratio = value / base if base else None
        log.extend([figure("system", name, value, unit, baseline=base, ratio=ratio, target=target, met=met)])
        base_text = "-" if base is None else f"{base:8.2f}"
        ratio_text = "" if ratio is None else f"{ratio:6.2f}x"
        print(f"  {name:<66} {value:8.2f} {unit:<7} before {base_text:>8} {ratio_text}")

    old = (before or {}).get("processes", {})
    kinds = {"idle": ("CPU share idle", "% core"), "survey": ("CPU share in the survey", "% core"),
             "rss": ("peak RSS", "MiB")}
    targets = {"idle": ("<= 15", 15.0), "survey": ("<= 40", 40.0), "rss": ("<= 650", 650.0)}
    print(f"each figure (the median of {after['rounds']} rounds) beside the same figure of the code before "
          f"({(before or {}).get('ref', 'not measured')})")
    add("`qai-edge up` to every node OK", after["startup_s"], "s", (before or {}).get("startup_s"),
        "<= 5 s", after["startup_s"] <= 5.0)
    now_total, old_total = totals(after), totals(before) if before else {}
    for key, (title, unit) in kinds.items():
        target, bound = targets[key]
        add(f"whole stack without the simulator: {title}", now_total[key], unit, old_total.get(key),
            f"{target} {unit}", now_total[key] <= bound)
    for name, values in after["processes"].items():
        for key, (title, unit) in kinds.items():
            if values is None:
                continue
            previous = old.get(name)
            add(f"{name}: {title}", values[key], unit, previous[key] if previous else None)
    add(f"survey duration (the standard survey: 4 points; idle window {after['idle_s']:g} s; median of "
        f"{after['rounds']} rounds each)", after["survey_s"], "s", (before or {}).get("survey_s"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle", type=float, default=30.0, help="idle seconds measured (30)")
    parser.add_argument("--survey-timeout", type=float, default=300.0, help="seconds the survey may take (300)")
    parser.add_argument("--rounds", type=int, default=3, help="before/after pairs; each figure is the median (3)")
    parser.add_argument("--baseline", default=BASELINE, help="the commit measured as 'before' (none: skip it)")
    parser.add_argument("--json", help="also write the figures to this file (bench/run_all.py)")
    parser.add_argument("--measure-into", help=argparse.SUPPRESS)  # the child: measure, write, exit
    args = parser.parse_args()
    if args.idle <= 0 or args.survey_timeout <= 0 or args.rounds < 1:
        parser.error("--idle and --survey-timeout: above 0; --rounds: at least 1")
    from qai_edge.isolation import isolate

    isolate("qai-edge-bench-system-")
    if args.measure_into:
        Path(args.measure_into).write_text(json.dumps(measure(args.idle, args.survey_timeout)))
        return 0
    from qai_edge.figures import FigureLog

    log = FigureLog(args.json, "system")
    before = None
    with tempfile.TemporaryDirectory(prefix="qai-edge-bench-baseline-") as scratch:
        tree = None if args.baseline == "none" else baseline_tree(args.baseline, Path(scratch))
        if args.baseline != "none" and tree is None:
            print(f"commit {args.baseline} is not in this clone: no 'before' figures", flush=True)
        olds, news = [], []
        for index in range(args.rounds):  # before and after alternate, so a drift of the machine hits both
            print(f"round {index + 1} of {args.rounds}", flush=True)
            if tree is not None:
                olds.append(run_measurement("before", tree, args))
            news.append(run_measurement("after", None, args))
        if olds:
            before = combine(olds)
            before["ref"] = args.baseline[:12]
        after = combine(news)
    report(before, after, log)
    return 0 if after["survey_status"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
