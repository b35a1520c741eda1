"""``python -m hub.ingest``: one ingest process, for scale-out and the fault tests.

Runs until SIGTERM or SIGINT, then flushes, acknowledges and prints its counts as
one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading

from hub.config import ConfigError, load_site
from hub.ingest.service import Ingest, tune_gc
from hub.services import parse_mqtt_url
from hub.store.migrations import migrate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hub.ingest", description=__doc__)
    ap.add_argument("--db", required=True, help="PostgreSQL URL")
    ap.add_argument("--mqtt", required=True, help="broker URL, mqtt://[user:pass@]host:port")
    ap.add_argument("--site", required=True, help="site file (YAML)")
    ap.add_argument("--client-id", required=True, help="fixed MQTT client id (the session)")
    ap.add_argument("--group", default="hub", help="shared subscription group")
    ap.add_argument("--batch-max", type=int, default=None,
                    help="readings per batch (default: HUB_BATCH_MAX or 2000)")
    ap.add_argument("--batch-wait-ms", type=int, default=None,
                    help="longest a message waits for its batch (default: HUB_BATCH_WAIT_MS or 50)")
    ap.add_argument("--session-expiry-s", type=int, default=7 * 24 * 3600,
                    help="how long the broker keeps this client's session while it is away")
    ap.add_argument("--migrate", action="store_true", help="apply migrations first")
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        site = load_site(args.site)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    if args.migrate:
        migrate(args.db)
    tune_gc()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    ingest = Ingest(db_url=args.db, broker=parse_mqtt_url(args.mqtt), site=site,
                    client_id=args.client_id, shared_group=args.group,
                    batch_max=args.batch_max, batch_wait_ms=args.batch_wait_ms,
                    session_expiry_s=args.session_expiry_s)
    ingest.start()
    if ingest.wait_connected(30):
        print(json.dumps({"ready": True, "client_id": args.client_id}), flush=True)
    else:
        logging.getLogger(__name__).warning("not connected after 30 s; still trying")
    done.wait()
    ingest.stop()
    print(json.dumps(ingest.stats()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
