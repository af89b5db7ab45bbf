#!/usr/bin/env python3
"""STAND-IN for FLOps' ml_data_server sidecar. NOT the real server.

Upstream's ml_data_server is an Apache Arrow Flight (gRPC) server on port
11027 serving the parquet files of its data volume; learners dial
grpc://172.17.0.1:11027. pyarrow is not packaged by Debian, so this stand-in
only serves the same directory read-only over plain HTTP on TCP 11027: enough
for readiness checks (a TCP connect, `GET /`) and to see which files a
learner holds. It does not speak Arrow Flight.

Data directory: ML_DATA_DIR, default /ml_data_server_volume (upstream's
mount point of the docker volume `ml_data_server_volume`).
"""
import functools
import logging
import os
import signal
import sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("DATA_MANAGER_PORT", os.environ.get("ML_DATA_SERVER_PORT", "11027")))
DATA_DIR = os.environ.get("ML_DATA_DIR", "/ml_data_server_volume")

log = logging.getLogger("ml-data-server-standin")


class Handler(SimpleHTTPRequestHandler):
    server_version = "ml-data-server-stand-in/1"

    def log_message(self, fmt, *args):
        log.info("%s %s", self.address_string(), fmt % args)

    # Read-only: only GET and HEAD (inherited) are served.


def main():
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stdout)
    os.makedirs(DATA_DIR, exist_ok=True)
    server = ThreadingHTTPServer(("0.0.0.0", PORT), functools.partial(Handler, directory=DATA_DIR))
    server.daemon_threads = True

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("ml_data_server STAND-IN (HTTP, not Arrow Flight) on 0.0.0.0:%d serving %s", PORT, DATA_DIR)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
