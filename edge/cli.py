"""``hub-edge``: the compound-side agent.

    hub-edge run --config edge.yaml [--scenario FILE] [--time-factor F]
                 [--fast-forward] [--duration S]
    hub-edge credentials --site deploy/sites/demo.yaml --out var/broker
    hub-edge camera --site SITE.yaml [--device ID] [--source ID=FILE] [--broker URL] [--fast]
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading

from edge.config import EdgeConfigError, load_edge_config
from edge.scenario import ScenarioError, load_scenario


def _run(a: argparse.Namespace) -> int:
    from edge.agent import EdgeAgent

    try:
        cfg = load_edge_config(a.config)
        if a.time_factor is not None:
            cfg = cfg.model_copy(update={"time_factor": a.time_factor})
        scenario = load_scenario(a.scenario) if a.scenario else None
        agent = EdgeAgent(cfg, scenario=scenario, fast_forward=a.fast_forward)
    except (EdgeConfigError, ScenarioError) as e:
        print(f"hub-edge: {e}", file=sys.stderr)
        return 2
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    agent.start()
    if a.fast_forward:
        while not done.is_set() and not agent.finished.wait(0.2):
            pass
        while not done.is_set() and not agent.wait_drained(0.5):
            pass
    else:
        done.wait(a.duration)
    agent.stop()
    print(json.dumps(agent.stats()))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="hub-edge", description="Smart-community edge agent")
    ap.add_argument("--log-level", default="INFO")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the agent for the devices in a config file")
    r.add_argument("--config", required=True)
    r.add_argument("--scenario", help="scenario YAML (overrides the config's)")
    # A hub rejects device time more than HUB_MAX_CLOCK_SKEW_S (300 s) ahead of its
    # clock: data time running ahead of the wall clock is for scenarios in the past.
    r.add_argument("--time-factor", type=float,
                   help="data seconds per wall second (a hub refuses data time more than"
                        " HUB_MAX_CLOCK_SKEW_S ahead of its clock)")
    r.add_argument("--fast-forward", action="store_true",
                   help="replay the scenario's span as fast as possible, then exit (a hub"
                        " refuses data time more than HUB_MAX_CLOCK_SKEW_S ahead of its clock)")
    r.add_argument("--duration", type=float, default=None,
                   help="exit after this many wall seconds (default: run until stopped)")
    c = sub.add_parser("credentials", help="broker password files and ACLs for a site")
    c.add_argument("--site", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--hub-user", default="hub")
    c.add_argument("--group", default="mosquitto",
                   help="group Mosquitto runs as: the files it reads get it ('' to leave)")
    from edge.camera import build_parser as camera_parser

    camera_parser(sub.add_parser("camera", help="publish the frames of a site's cameras"))
    a = ap.parse_args(argv)
    try:
        from hub.logs import setup as setup_logging  # type: ignore[import-not-found]

        setup_logging(a.log_level)
    except ImportError:
        logging.basicConfig(level=a.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if a.cmd == "camera":
        from edge.camera import run as camera_run

        return camera_run(a)
    if a.cmd == "credentials":
        from edge.credentials import main as cred_main

        return cred_main(["--site", a.site, "--out", a.out, "--hub-user", a.hub_user,
                          "--group", a.group])
    return _run(a)


if __name__ == "__main__":
    sys.exit(main())
