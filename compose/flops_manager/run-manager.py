"""Run upstream's FLOps manager (``python main.py``) and exit when its main thread ends.

Upstream's main.py (flops_manager_package/flops_manager/main.py) starts the API in a
non-daemon thread, then runs the MQTT loop in the main thread. When the broker cannot be
reached, or the connection drops (paho calls upstream's ``on_disconnect`` with the wrong
number of arguments, which raises), the main thread ends with a traceback while the API
thread keeps the process alive: a manager that answers HTTP but never hears its FL actors.

Here the process exits instead (status 1), so Docker's restart policy starts it again, and it
recovers by itself once the broker is back. Upstream's code is run unchanged, the way
``python main.py`` runs it (its directory first on the import path: database/common.py
imports ``database.main``).
"""

import os
import runpy
import sys
import traceback

MAIN = os.path.join(os.environ.get("FLOPS_MANAGER_DIR", "/flops_manager"), "main.py")

if __name__ == "__main__":
    sys.argv[0] = MAIN
    sys.path[0] = os.path.dirname(MAIN)
    try:
        runpy.run_path(MAIN, run_name="__main__")
        print(
            "flops-manager: main thread returned; exiting so Docker restarts the manager",
            file=sys.stderr,
        )
    except BaseException:  # noqa: B036 - whatever ended the main thread, report it and exit
        traceback.print_exc()
        print(
            "flops-manager: main thread failed; exiting so Docker restarts the manager",
            file=sys.stderr,
        )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)  # the API thread is not a daemon: a plain exit would wait for it forever
