"""The FLOps management suite: one docker compose project, in layers.

- ``services``: the suite's identity (services, ports, volumes, labels); it imports nothing.
- ``project``: what every job shares: the Docker handle, the one way to run a compose
  command, container snapshots, images, and starting services until they are healthy.
- one module per job, each using only ``services`` and ``project``: ``preflight`` (Docker,
  compose, ports, network), ``registry`` (catalog, clear), ``flopsdb`` (the FLOps manager
  database, redb), ``health`` (readiness, doctor, status).
- ``lifecycle`` on top: up, down, restart and the reset scopes, composed from the jobs.

Nothing here prints: progress goes to a callback, results come back as ``Outcome``s.
Importing this package is cheap (python-on-whales and pymongo load on first use).
"""
