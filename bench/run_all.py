"""Run every bench/ script and print one table of figures, each beside its baseline and target.

`make bench` runs this. Each script runs in its own process and session with `--json` into a temporary
directory (the figures as `qai_edge.figures` records), under a time limit: a script that fails or runs
out of time is a row saying so, with whatever figures it wrote before, and the other scripts still run;
on a time-out the script and every process it started are stopped (SIGINT, SIGTERM, then SIGKILL to its
process group). Then one table (area, figure, value, baseline, ratio, target, met) is printed and
everything is written to bench/results.json (not committed): the records, each step's command, status,
wall time, load average and output, and the machine (CPUs, memory, load average before and after,
niceness, python and library versions, git commit, date).

The scripts and what --quick changes (the sizes the targets are set at stay where they can):
  mission_core.py    scheduler vs py_trees, journals      quick: --repeat 1 (best of 1, not 3)
  mission_ros.py     mission engine over ROS              quick: 300 independent tasks (1,000), a chain of 100
                                                          (200), 50 latency samples (200), a 1,000-task
                                                          mission beside a running one (5,000)
  io_sim.py          simulator, control latency, tracking quick: unchanged (about a minute)
  quantum_qaoa.py    QAOA kernel vs Aer, end to end       quick: sizes 16,20 with Aer (16,20,24,25), no
                                                          kernel-only sizes (26,28), one correctness check
                                                          (10,16,20), 10 end-to-end instances (100)
  intelligence.py    inference, held-out models           quick: --quick (15 s node runs, fewer flights)
  hub_link.py        hub link vs raw paho                 quick: 2,000 messages (10,000), 200 latency
                                                          samples (500), a 10,000-message outage
                                                          (100,000), 50 signatures (200), 10 commands (20)
  hub_trust.py       hub ingest of signed and sealed      quick: 5,000 messages (20,000), 100 replies (300)
                     telemetry vs raw paho, reply checks
  hub_dashboard.py   50 robots into the browser dashboard quick: a 10 s window (30), 5 s warm-up (8)
  system.py          CPU idle and in a survey, peak RSS,  quick: 10 s idle (30), one round (3)
                     start-up, per process, before/after
  chaos.py           missions while engines and the       quick: 4 min of chaos (30)
                     broker are SIGKILLed at random
  learning_loop.py   flights recorded with a new payload, quick: 8 flights, 5 to train (30, 20)
                     the anomaly model fine-tuned on them

Exit status: 0 when every script ran to the end (a missed target is a figure, not a failure: figures move
with the machine's load), 1 when one failed or timed out, 2 for bad options.

    .venv/bin/python bench/run_all.py [--quick] [--only AREA,...] [--timeout-scale X] [--output PATH] [-v]
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
AREAS = {"mission": "mission engine", "quantum": "quantum bridge", "intelligence": "intelligence", "io": "I/O",
         "hub": "hub link", "dashboard": "dashboard", "system": "system", "chaos": "chaos soak",
         "learning": "learning loop"}
LIBRARIES = ("ros-jazzy-rclpy", "numpy", "torch", "ncps", "qiskit", "qiskit-aer", "numba", "py_trees",
             "paho-mqtt", "cryptography", "rich")


@dataclass(frozen=True)
class Step:
    """One bench script: its area (an AREAS key), its options, and how long it may take."""

    script: str
    area: str
    quick_args: tuple[str, ...] = ()
    timeout: float = 900.0
    quick_timeout: float = 300.0
    args: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        return Path(self.script) if Path(self.script).is_absolute() else BENCH / self.script

    @property
    def title(self) -> str:
        return AREAS.get(self.area, self.area)


STEPS = (
    Step("mission_core.py", "mission", ("--repeat", "1"), timeout=600, quick_timeout=300),
    Step("mission_ros.py", "mission", ("--tasks", "300", "--chain", "100", "--latency-samples", "50",
                                       "--big", "1000"), timeout=1200, quick_timeout=300),
    Step("io_sim.py", "io", (), timeout=600, quick_timeout=300),
    Step("quantum_qaoa.py", "quantum", ("--sizes", "16,20", "--kernel-only", "", "--checks", "10",
                                        "--instances", "10"), timeout=1800, quick_timeout=400),
    Step("intelligence.py", "intelligence", ("--quick",), timeout=1800, quick_timeout=500),
    Step("hub_link.py", "hub", ("--messages", "2000", "--latency-samples", "200", "--outage", "10000",
                                "--signing", "50", "--commands", "10"), timeout=1200, quick_timeout=300),
    Step("hub_trust.py", "hub", ("--messages", "5000", "--replies", "100"), timeout=600, quick_timeout=200),
    Step("hub_dashboard.py", "dashboard", ("--seconds", "10", "--warmup", "5"), timeout=600, quick_timeout=200),
    Step("system.py", "system", ("--idle", "10", "--rounds", "1"), timeout=1500, quick_timeout=600),
    Step("chaos.py", "chaos", ("--minutes", "4"), timeout=3000, quick_timeout=900),
    Step("learning_loop.py", "learning", ("--flights", "8", "--train", "5"), timeout=2400, quick_timeout=600),
)


@dataclass
class StepResult:
    step: Step
    command: list[str]
    status: str  # "ok", "failed" or "timed out"
    returncode: int | None
    wall_s: float
    timeout_s: float
    load_before: float
    load_after: float
    output: str
    records: list[dict] = field(default_factory=list)
    error: str | None = None


def select_steps(steps, only: str | None) -> list[Step]:
    """Return the steps of the areas (or script names) listed in `only`; all of them without it.

    Raises ValueError naming what is not an area or a script.
    """
    if not only:
        return list(steps)
    wanted = [name.strip() for name in only.split(",") if name.strip()]
    known = set(AREAS) | {Path(s.script).stem for s in steps}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise ValueError(f"--only: {', '.join(unknown)} is not an area ({', '.join(AREAS)}) or a script "
                         f"({', '.join(Path(s.script).stem for s in steps)})")
    return [s for s in steps if s.area in wanted or Path(s.script).stem in wanted]


def group_members(group: int) -> list[int]:
    """Return the live processes (zombies left out) of a process group, from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == group:
            members.append(int(entry.name))
    return members


def stop_group(process: subprocess.Popen, grace: float = 10.0, *, first=signal.SIGINT) -> None:
    """Stop a script and every process left in its group: `first` (SIGINT), then SIGTERM, then SIGKILL.

    The script runs in its own session, so its group id is its pid; each signal gets its time to work.
    """
    ladder = [(signal.SIGINT, grace), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)]
    ladder = ladder[[sig for sig, _ in ladder].index(first):]
    for sig, wait in ladder:
        process.poll()
        if not group_members(process.pid):
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            process.poll()  # reap the script itself, so it does not count as alive
            if not group_members(process.pid):
                return
            time.sleep(0.05)


def _last_error_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def run_step(step: Step, quick: bool, directory: Path, *, timeout_scale: float = 1.0, echo: bool = False,
             python: str = sys.executable) -> StepResult:
    """Run one script in its own session with --json into `directory`; never raises for the script's faults."""
    json_path = directory / f"{Path(step.script).stem}.json"
    command = [python, str(step.path), *(step.quick_args if quick else step.args), "--json", str(json_path)]
    timeout = (step.quick_timeout if quick else step.timeout) * timeout_scale
    load_before = os.getloadavg()[0]
    began = time.monotonic()
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               errors="replace", start_new_session=True, cwd=ROOT, env=environment)
    chunks: list[str] = []

    def read() -> None:
        for line in process.stdout:
            chunks.append(line)
            if echo:
                print(f"  | {line}", end="", flush=True)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        process.wait(timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
    except BaseException:  # Ctrl-C: stop the script and what it started, then let it through
        stop_group(process, grace=5.0)
        raise
    # On a time-out the script and its group; otherwise anything it left behind in its group.
    stop_group(process, first=signal.SIGINT if timed_out else signal.SIGTERM)
    try:  # reap it: stop_group may have seen it gone (a zombie) before its own poll() could
        process.wait(5)
    except subprocess.TimeoutExpired:
        pass
    reader.join(10)
    if not reader.is_alive():  # else a process outside the group still holds the pipe: leave it to the thread
        process.stdout.close()
    wall = time.monotonic() - began
    output = "".join(chunks)
    try:
        records = json.loads(json_path.read_text()) if json_path.exists() else []
        if not isinstance(records, list):
            raise ValueError("not a list of records")
    except ValueError as error:
        records, output = [], output + f"\n[run_all] {json_path.name}: unreadable figures: {error}\n"
    for record in records:
        record.setdefault("area", step.title)
        record["script"] = Path(step.script).name
    if timed_out:
        status, error = "timed out", f"stopped after {timeout:.0f} s"
    elif process.returncode != 0:
        status, error = "failed", f"exit {process.returncode}: {_last_error_line(output)}"
    else:
        status, error = "ok", None
    return StepResult(step, command, status, None if timed_out else process.returncode, wall, timeout,
                      load_before, os.getloadavg()[0], output, records, error)


def failure_record(result: StepResult) -> dict:
    """Return the row that says a script failed or timed out, and why."""
    return {"area": result.step.title, "figure": f"{Path(result.step.script).name} {result.status.upper()}",
            "value": None, "unit": "", "baseline": None, "ratio": None, "target": None, "met": None,
            "script": Path(result.step.script).name, "error": f"{result.status}: {result.error}"}


def collect(results: list[StepResult]) -> list[dict]:
    """Return every script's records in run order, each failed or timed-out script's row after its own."""
    records = []
    for result in results:
        script = Path(result.step.script).name
        records.extend({**record, "script": script} for record in result.records)
        if result.status != "ok":
            records.append({**failure_record(result), "script": script})
    return records


def format_number(value: float | None) -> str:
    """Format a figure with about three significant digits; '-' for none."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    magnitude = abs(value)
    if magnitude == 0:
        return "0"
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    if magnitude >= 0.001:
        return f"{value:#.3g}"
    return f"{value:.1e}"


def _with_unit(value, unit: str) -> str:
    text = format_number(value)
    return f"{text} {unit}" if unit and text != "-" else text


def _with_interval(value, interval, unit: str) -> str:
    """Return a value with its unit and, when given as [low, high], its 95 % interval."""
    text = _with_unit(value, unit)
    if interval and None not in interval and text != "-":
        text += f" [{format_number(interval[0])}, {format_number(interval[1])}]"
    return text


def table_rows(records: list[dict]) -> list[tuple[str, ...]]:
    """Return the table's cells per record: area, figure, value, baseline, ratio, target, met.

    A record's `interval` and `baseline_interval` ([low, high], 95 %) follow their values in brackets, and its
    `samples` (and `alone_samples`) the figure's name.
    """
    rows = []
    for record in records:
        if record.get("error"):
            rows.append((record["area"], record["figure"], record["error"], "", "", "", "ERROR"))
            continue
        met = {True: "yes", False: "NO", None: ""}[record.get("met")]
        ratio = record.get("ratio")
        unit = record.get("unit", "")
        value = _with_interval(record.get("value"), record.get("interval"), unit)
        name = record["figure"]
        if record.get("samples") is not None:  # a latency's count: the figure's sample size
            alone = record.get("alone_samples")
            name += f" ({record['samples']:,} samples" + (f"; alone {alone:,}" if alone is not None else "") + ")"
        rows.append((record["area"], name, value,
                     _with_interval(record.get("baseline"), record.get("baseline_interval"), unit),
                     "" if ratio is None else f"{format_number(ratio)}x", record.get("target") or "", met))
    return rows


def build_table(records: list[dict], title: str = "qai_edge benchmarks"):
    """Return the rich Table of the records, a section per area."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_lines=False, pad_edge=False)
    for name, options in (("area", {"no_wrap": True}), ("figure", {"ratio": 1}), ("value", {"justify": "right"}),
                          ("baseline", {"justify": "right"}), ("ratio", {"justify": "right"}),
                          ("target", {}), ("met", {"no_wrap": True})):
        table.add_column(name, **options)
    styles = {"yes": "green", "NO": "bold red", "ERROR": "bold red"}
    previous = None
    for row in table_rows(records):
        if previous is not None and row[0] != previous:
            table.add_section()
        previous = row[0]
        style = styles.get(row[6])
        table.add_row(*row[:6], f"[{style}]{row[6]}[/]" if style else row[6],
                      style="red" if row[6] == "ERROR" else None)
    return table


def markdown(document: dict) -> str:
    """Return a results document as docs/benchmarks.md's table: how it was measured, then a row per figure."""
    machine = document["machine"]
    before, after = machine["load_average_before"][0], machine["load_average_after"][0]
    steps = ", ".join(f"{s['script']} {s['wall_s']:.0f} s" + ("" if s["status"] == "ok" else f" ({s['status']})")
                      for s in document["steps"])
    lines = [f"`{document['command'].strip()}`{' (quick)' if document['quick'] else ''} on {machine['date'][:10]}, "
             f"{machine['cpu_count']} CPUs, load average {before:.1f} before and {after:.1f} after, "
             f"{document['wall_s'] / 60:.0f} min ({steps}).", "",
             "| area | figure | value | baseline | ratio | target | met |", "|---|---|---|---|---|---|---|"]
    previous = None
    for row in table_rows(document["records"]):
        cells = [("" if row[0] == previous else row[0]), *row[1:]]
        previous = row[0]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


FIGURES = re.compile(r"(<!-- figures (?P<source>\S+) (?P<scripts>\S+) -->\n)(?P<body>.*?)(<!-- /figures -->)", re.S)


def figures_block(document: dict, source: str, scripts: list[str], link: str | None = None) -> str:
    """Return a docs block's table: the figures `scripts` wrote in the results file `source`, with how measured."""
    machine = document["machine"]
    steps = [step for step in document["steps"] if step["script"] in scripts]
    records = [record for record in document["records"] if record.get("script") in scripts]
    if not steps or not records:
        raise ValueError(f"{source}: no figures of {', '.join(scripts)}")
    quick = ", quick" if document["quick"] else ""
    commit = (machine.get("git_commit") or "?")[:8]
    lines = [f"From [`{source}`]({link or source}) (`{document['command'].strip()}`{quick}, commit {commit}, "
             f"{machine['date'][:10]}, {machine['cpu_count']} CPUs, "
             f"load average {min(step['load_before'] for step in steps):.1f}-"
             f"{max(step['load_after'] for step in steps):.1f}); written by `bench/run_all.py --update-docs`, "
             "not by hand. Sample sizes are in the figures' names and the script's `--help`.", "",
             "| figure | value | baseline | ratio | target | met |", "|---|---|---|---|---|---|"]
    for row in table_rows(records):
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row[1:]) + " |")
    return "\n".join(lines) + "\n"


def update_docs(paths: list[Path], root: Path = ROOT) -> list[Path]:
    """Rewrite every figures block in `paths` from its results file; return the files that changed."""
    changed = []
    for path in paths:
        text = path.read_text()

        def fill(match: re.Match) -> str:
            source = match["source"]
            document = json.loads((root / source).read_text())
            body = figures_block(document, source, match["scripts"].split(","),
                                 os.path.relpath(root / source, path.parent))
            return match.group(1) + body + match.group(5)

        updated = FIGURES.sub(fill, text)
        if updated != text:
            path.write_text(updated)
            changed.append(path)
    return changed


def doc_files(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info(load_before: tuple[float, ...], load_after: tuple[float, ...]) -> dict:
    """Describe the machine and the software the figures were measured on."""
    def first(path: str, key: str) -> str | None:
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
        except OSError:
            return None
        return None

    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        mosquitto = subprocess.run(["/usr/sbin/mosquitto", "-h"], capture_output=True, text=True,
                                   timeout=5).stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        mosquitto = None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "host": platform.node(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "cpu_model": first("/proc/cpuinfo", "model name"), "memory": first("/proc/meminfo", "MemTotal"),
            "load_average_before": list(load_before), "load_average_after": list(load_after),
            "niceness": os.nice(0), "python": sys.version.split()[0], "libraries": versions,
            "mosquitto": mosquitto, "git_commit": _git("rev-parse", "HEAD"),
            "git_dirty": bool(status) if status is not None else None}


def results_document(results: list[StepResult], machine: dict, *, quick: bool, argv: list[str],
                     wall_s: float) -> dict:
    """Return what bench/results.json holds."""
    return {"command": "bench/run_all.py " + " ".join(shlex.quote(a) for a in argv), "quick": quick,
            "wall_s": round(wall_s, 1), "machine": machine,
            "steps": [{"script": Path(r.step.script).name, "area": r.step.title, "command": r.command,
                       "status": r.status, "returncode": r.returncode, "error": r.error,
                       "wall_s": round(r.wall_s, 1), "timeout_s": r.timeout_s,
                       "load_before": r.load_before, "load_after": r.load_after, "figures": len(r.records),
                       "output": r.output[-20000:]} for r in results],
            "records": collect(results)}


def write_results(path: Path, document: dict) -> None:
    """Write the document as JSON (strict: a non-finite number becomes null)."""
    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(clean(document), indent=1, allow_nan=False) + "\n")
    temporary.replace(path)


def _console():
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 200)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, so the whole run takes minutes")
    parser.add_argument("--only", help=f"areas ({','.join(AREAS)}) or script names, comma-separated")
    parser.add_argument("--timeout-scale", type=float, default=1.0, help="multiply every script's time limit")
    parser.add_argument("--output", default=str(BENCH / "results.json"), help="the JSON (bench/results.json)")
    parser.add_argument("-v", "--verbose", action="store_true", help="echo each script's output as it runs")
    parser.add_argument("--markdown", metavar="RESULTS_JSON", help="print a results file as the table of "
                        "docs/benchmarks.md, run nothing")
    parser.add_argument("--update-docs", action="store_true", help="rewrite the figures blocks of README.md and "
                        "docs/*.md from the results files they name (bench/published/*.json), run nothing")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.update_docs:
        for path in update_docs(doc_files()):
            print(f"updated {path.relative_to(ROOT)}")
        return 0
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return 0
    try:
        steps = select_steps(STEPS, args.only)
    except ValueError as error:
        parser.error(str(error))
    console = _console()
    load_before = os.getloadavg()
    began = time.monotonic()
    console.print(f"bench: {len(steps)} scripts{' (quick)' if args.quick else ''}, {os.cpu_count()} CPUs, "
                  f"load average {load_before[0]:.1f} {load_before[1]:.1f} {load_before[2]:.1f}, "
                  f"niceness {os.nice(0)}")
    results = []
    with tempfile.TemporaryDirectory(prefix="qai-edge-bench-") as directory:
        for index, step in enumerate(steps, 1):
            options = step.quick_args if args.quick else step.args
            console.print(f"[{index}/{len(steps)}] {step.script} {' '.join(shlex.quote(a) for a in options)}",
                          highlight=False)
            result = run_step(step, args.quick, Path(directory), timeout_scale=args.timeout_scale,
                              echo=args.verbose)
            results.append(result)
            console.print(f"      {result.status}, {len(result.records)} figures, {result.wall_s:.0f} s "
                          f"(load {result.load_before:.1f} -> {result.load_after:.1f})"
                          f"{': ' + result.error if result.error else ''}", highlight=False)
    wall = time.monotonic() - began
    machine = machine_info(load_before, os.getloadavg())
    document = results_document(results, machine, quick=args.quick, argv=argv, wall_s=wall)
    write_results(Path(args.output), document)
    title = (f"qai_edge benchmarks{' (quick)' if args.quick else ''}: {machine['cpu_count']} CPUs, load average "
             f"{load_before[0]:.1f} before, {machine['load_average_after'][0]:.1f} after, {wall / 60:.1f} min")
    console.print(build_table(document["records"], title))
    console.print(f"written to {args.output}")
    return 0 if all(r.status == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
