from glob import glob

from setuptools import find_packages, setup

PACKAGE = "qai_edge"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="QAI edge node: mission, intelligence, quantum bridge and I/O engines as ROS 2 nodes, "
                "the simulated vehicle, and the hub's programs",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["qai_edge", "qai_edge.*", "qai_mission", "qai_mission.*",
                                    "qai_intelligence", "qai_intelligence.*", "qai_quantum_bridge",
                                    "qai_quantum_bridge.*", "qai_io", "qai_io.*", "qai_sim", "qai_sim.*",
                                    "qai_hub", "qai_hub.*", "qai_recorder", "qai_recorder.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.conf")),
        (f"share/{PACKAGE}/config/missions", glob("config/missions/*.yaml")),
        (f"share/{PACKAGE}/config/gazebo", glob("config/gazebo/*.sdf")),
    ],
    # The intelligence engine's trained models (a few KB each), so installs run without training.
    package_data={"qai_intelligence": ["models/*/model.pt", "models/*/meta.json"],
                  # The hub dashboard's page (qai-hub serve): HTML, JS and CSS, served by the package itself.
                  "qai_hub": ["dashboard_static/*.html", "dashboard_static/*.js", "dashboard_static/*.css"],
                  # The PID gains qai-train pid tuned: the io_engine's pid_* defaults.
                  "qai_io": ["pid_gains.json"]},
    install_requires=["setuptools", "pyyaml"],
    zip_safe=True,
    extras_require={"test": ["pytest"]},  # colcon test reads this; setuptools >= 72 drops tests_require
    entry_points={
        # The node types each engine package declares (qai_edge.nodes reads them; no engine is named there).
        "qai_edge.nodes": [
            "mission_engine = qai_mission.parameters:NODE",
            "intelligence_engine = qai_intelligence.parameters:NODE",
            "quantum_bridge = qai_quantum_bridge.parameters:NODE",
            "io_engine = qai_io.parameters:NODE",
            "sim_vehicle = qai_sim.parameters:NODE",
            "hub_link = qai_io.hub_parameters:NODE",
            "recorder = qai_recorder.parameters:NODE",
        ],
        # Subcommands of qai-edge that belong to an engine package.
        "qai_edge.commands": [
            "demo = qai_edge.demo:COMMAND",
        ],
        "console_scripts": [
            # The engine nodes (the qai_edge.nodes entry points declare the same).
            "mission_engine = qai_mission.node:main",
            "intelligence_engine = qai_intelligence.node:main",
            "quantum_bridge = qai_quantum_bridge.node:main",
            "io_engine = qai_io.node:main",
            "sim_vehicle = qai_sim.node:main",
            "hub_link = qai_io.hub_node:main",
            "recorder = qai_recorder.node:main",
            # Command-line tools.
            "qai-edge = qai_edge.cli:main",
            "qai-mission = qai_mission.cli:main",
            "qai-train = qai_intelligence.cli:main",
            "qai-hub = qai_hub.cli:main",
        ],
    },
)
