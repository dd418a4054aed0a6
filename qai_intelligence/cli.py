"""qai-train: train one of the intelligence engine's models from simulated data, reproducibly, on CPU.

    qai-train endurance|anomaly|policy|pid [--seed N] [--out DIR] [--cell cfc|ltc|gru] [--quick] [--residual]
    qai-train anomaly --from-recordings DIR... [--base CHECKPOINT] [--seed N] [--out DIR] [--quick]

Generates the data from the simulator's model (not a ROS graph), trains with a progress bar, scores the model
beside its baseline on the two held-out sets, and writes DIR/model.pt and DIR/meta.json (data seed, metrics,
model config, library versions). The same seed gives the same model. `pid` tunes the I/O engine's PID gains
by CMA-ES instead (qai_intelligence.pid_tuning) and writes them as JSON to --out (default
./qai_models/pid_gains.json; the I/O engine ships qai_io/pid_gains.json). `policy --residual` trains a
correction to the tuned PID instead of a full command (qai_intelligence.residual; the io_engine's
`controller: residual`). `anomaly --from-recordings` fine-tunes the shipped anomaly model (or --base) on
flights the recorder wrote (rosbag2 bags, or directories of them: qai_intelligence.finetune), and names each
recording it used by SHA-256 in meta.json. torch and ncps are imported only once
the arguments are read, so --help is instant.

Exit codes: 0 trained and written; 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

TASKS = ("endurance", "anomaly", "policy", "pid")
CELLS = ("cfc", "ltc", "gru")


def parse(argv):
    parser = argparse.ArgumentParser(prog="qai-train", description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=TASKS, help="which model to train")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and of training (default 0)")
    parser.add_argument("--out", type=Path, default=None, help="checkpoint directory (default ./qai_models/TASK)")
    parser.add_argument("--cell", choices=CELLS, default="cfc", help="the network's cell (default cfc)")
    parser.add_argument("--quick", action="store_true", help="a small run (minutes less; for trying things out)")
    parser.add_argument("--residual", action="store_true",
                        help="policy: a correction to the io_engine's tuned PID (controller: residual), CfC only")
    parser.add_argument("--from-recordings", nargs="+", metavar="DIR", default=None,
                        help="anomaly: fine-tune on these recorded flights (bags, or directories of bags)")
    parser.add_argument("--base", type=Path, default=None,
                        help="with --from-recordings: the checkpoint to start from (default: the shipped model)")
    args = parser.parse_args(argv)
    if args.from_recordings is not None and (args.task != "anomaly" or args.cell != "cfc"):
        parser.error("--from-recordings: only for the anomaly model (which fine-tunes the base's cell)")
    if args.base is not None and args.from_recordings is None:
        parser.error("--base: only with --from-recordings")
    if args.residual and (args.task != "policy" or args.cell != "cfc"):
        parser.error("--residual: only for the policy, with --cell cfc")
    if args.seed < 0:
        parser.error(f"--seed: must be >= 0, got {args.seed}")
    return args


class RichProgress:
    def __init__(self, progress):
        self._progress = progress
        self._task = None

    def stage(self, description: str, total: int) -> None:
        if self._task is not None:
            self._progress.update(self._task, completed=self._progress.tasks[self._task].total)
        self._task = self._progress.add_task(description, total=total)

    def advance(self, steps: int = 1) -> None:
        if self._task is not None:
            self._progress.advance(self._task, steps)


def _summary_rows(task: str, metrics: dict) -> list[tuple[str, str, str, str]]:
    recorded = metrics.get("recorded_validation")
    if recorded:  # a fine-tune on recordings: beside the base model, on the recorded validation flights
        return [("recorded validation", f"next-tick NLL ({recorded['flights']} flights; lower is better)",
                 f"{recorded['nll_tuned']:.3f}", f"{recorded['nll_base']:.3f} (base model)")]
    rows = []
    for name in ("training", "outside"):
        result = metrics.get(f"held_out_{name}", {})
        if task == "endurance":
            for key in ("mae_s", "mae_percent", "mae_last_5min_s"):
                rows.append((name, key, f"{result['model'][key]:.1f}", f"{result['baseline'][key]:.1f}"))
        elif task == "anomaly":
            for key in ("precision", "recall", "delay_median_s", "false_alarms_per_hour_clean"):
                rows.append((name, key, f"{result['model'][key]:.2f}", f"{result['baseline'][key]:.2f}"))
        else:
            for key in ("completion", "duration_s", "cross_track_mean_m", "energy_wh"):
                rows.append((name, key, f"{result['policy'][key]:.2f}", f"{result['pid'][key]:.2f}"))
    return rows


def main(argv=None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    console = Console()
    console.print(f"qai-train {args.task}: loading torch and ncps ...")
    import torch

    from qai_intelligence import checkpoint

    torch.set_num_threads(1)  # small models: one thread is as fast, and leaves the machine's other core free
    if args.task == "pid":
        return _tune_pid(args, console)
    out = args.out or Path("qai_models") / args.task
    made_on = checkpoint.provenance()  # of the code as it starts (files edited while it runs do not make it)
    started = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bar:
        progress = RichProgress(bar)
        if args.task == "endurance":
            from qai_intelligence.training import EnduranceSizes, train_endurance

            sizes = EnduranceSizes(train=40, validation=8, test=12, iterations=60) if args.quick else EnduranceSizes()
            result = train_endurance(args.seed, args.cell, sizes, progress)
        elif args.from_recordings is not None:
            result = _fine_tune(args, progress)
            if result is None:
                return 2
        elif args.task == "anomaly":
            from qai_intelligence.training import AnomalySizes, train_anomaly

            sizes = AnomalySizes(train=24, validation=12, test=18, iterations=40) if args.quick else AnomalySizes()
            result = train_anomaly(args.seed, args.cell, sizes, progress)
        elif args.residual:
            from qai_intelligence.residual import ResidualSizes, train_residual

            sizes = ResidualSizes(generations=2, population=4, episodes=4, normalisation_episodes=4,
                                  selection_episodes=8, validation_episodes=12, validate_every=1, course_runs=1) \
                if args.quick else ResidualSizes()
            result = train_residual(args.seed, sizes, progress)
        else:
            from qai_intelligence.policy import PolicySizes, train_policy

            sizes = PolicySizes(imitation_episodes=20, imitation_iterations=40, dagger_episodes=5, dagger_iterations=20,
                                generations=2, population=4,
                                episodes_per_candidate=2, validation_episodes=3, course_runs=1) \
                if args.quick else PolicySizes()
            result = train_policy(args.seed, args.cell, sizes, progress)
        progress.stage("done", 1)
        progress.advance()
    seconds = round(time.perf_counter() - started, 1)
    checkpoint.save(result.model, out, {"data": result.data, "metrics": result.metrics, "made_on": made_on,
                                        "training": {**result.training, "total_seconds": seconds},
                                        "command": f"qai-train {args.task} --seed {args.seed} --cell {args.cell}"
                                                   + (" --quick" if args.quick else "")
                                                   + (" --residual" if args.residual else "")
                                                   + (" --from-recordings ..." if args.from_recordings else "")})
    table = Table(title=f"{args.task} ({args.cell}, seed {args.seed}): held-out flights, model beside baseline")
    for column in ("held-out set", "metric", "model", "baseline" if args.task != "policy" else "PID"):
        table.add_column(column)
    for row in _summary_rows(args.task, result.metrics):
        table.add_row(*row)
    console.print(table)
    console.print(f"wrote {out}/model.pt and meta.json in {seconds:g} s")
    console.print(json.dumps({"seconds": seconds, "out": str(out)}))
    return 0


def _fine_tune(args, progress):
    """Fine-tune the anomaly model on recorded flights; None (a message printed) when they cannot be used."""
    from qai_intelligence.finetune import fine_tune_anomaly
    from qai_intelligence.recordings import RecordingError, find_bags, read_flight
    from qai_intelligence.store import SHIPPED

    try:
        bags = find_bags(args.from_recordings)
        progress.stage("reading the recorded flights", len(bags))
        flights = []
        for bag in bags:
            flights.append(read_flight(bag))
            progress.advance()
        return fine_tune_anomaly(args.base or SHIPPED / "anomaly", flights, args.seed,
                                 iterations=50 if args.quick else 300, progress=progress)
    except (RecordingError, ValueError) as error:
        print(f"qai-train: {error}", file=sys.stderr)  # plain: a path is not wrapped nor read as markup
        return None


def _tune_pid(args, console) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from qai_intelligence.checkpoint import provenance
    from qai_intelligence.pid_tuning import TuningSizes, tune_pid

    out = args.out or Path("qai_models") / "pid_gains.json"
    sizes = TuningSizes(generations=3, population=4, episodes=4, validation_episodes=20) if args.quick \
        else TuningSizes()
    made_on = provenance()  # of the code as it starts (files edited while it runs do not make it)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bar:
        result = tune_pid(args.seed, sizes, RichProgress(bar))
    result["command"] = f"qai-train pid --seed {args.seed}" + (" --quick" if args.quick else "")
    result["made_on"] = made_on
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    validation = result["validation"]
    difference = validation["tuned_minus_default"]
    console.print(f"validation ({validation['episodes']} episodes): cost {validation['tuned_cost']:.3f} tuned, "
                  f"{validation['default_cost']:.3f} defaults, difference {difference['mean']:+.3f} "
                  f"[{difference['low']:+.3f}, {difference['high']:+.3f}]; "
                  + ("tuned gains kept" if result["tuned"] else "no better: the defaults kept"))
    console.print(f"wrote {out} in {result['seconds']:g} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
