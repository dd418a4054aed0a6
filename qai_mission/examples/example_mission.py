"""The MissionClient API in one script: submit, follow, add a task, cancel one, wait, read the outcome.

Runs against the mission engine alone (its built-in `wait` kind):
    qai-edge up &                       # or: ros2 launch qai_edge edge.launch.py
    python -m qai_mission.examples.example_mission [--namespace drone1]
"""

import argparse
import time

from qai_mission.client import MissionClient, MissionOutcome, MissionRejected, progress_text

MISSION = {
    "name": "example",
    "tasks": [
        {"id": "warm_up", "kind": "wait", "priority": 5, "parameters": {"seconds": 1.0}},
        {"id": "survey", "kind": "wait", "depends_on": ["warm_up"], "parameters": {"seconds": 3.0}},
        {"id": "photo", "kind": "wait", "depends_on": ["warm_up"], "optional": True, "parameters": {"seconds": 30}},
    ],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--namespace", default="")
    args = parser.parse_args()

    with MissionClient(namespace=args.namespace) as client:
        try:
            client.submit({"tasks": [{"id": "bad", "kind": "wait", "parameters": {"seconds": -1}}]})
        except MissionRejected as error:
            print(f"rejected as it should be: {error}")

        mission_id = client.submit(MISSION)
        print(f"submitted {mission_id}")
        client.add_tasks(mission_id, [{"id": "report", "kind": "wait", "depends_on": ["survey"],
                                       "parameters": {"seconds": {"$result": "warm_up.waited"}}}])
        canceled = False
        while not client.is_complete(mission_id):
            progress = client.feedback(mission_id)
            if progress is not None:
                running = [progress_text(t) for t in progress.tasks if t.state.name == "RUNNING"]
                print(f"{progress.tasks_succeeded}/{progress.tasks_total} done; running: {running}")
                if not canceled and any(t.id == "photo" and t.state.name == "RUNNING" for t in progress.tasks):
                    client.cancel(mission_id, task_id="photo", reason="not needed today")
                    canceled = True
            time.sleep(0.5)

        result = client.wait(mission_id)
        print(f"{mission_id}: {result.outcome.value} ({result.message})")
        for task in result.tasks:
            print(f"  {task.id:<8} {task.state.name:<10} {task.result}")
        return 0 if result.outcome is MissionOutcome.SUCCEEDED else 1


if __name__ == "__main__":
    raise SystemExit(main())
