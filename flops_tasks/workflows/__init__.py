"""Workflows by domain: each takes the run (``run.Run``), does its work through the layers
below, and adds its rows to the run's report; only the edge renders it.

- ``stack``: the management suite (env, up, down, reset scopes, clear-registry, redb, status,
  logs);
- ``workers``: worker preparation and clear-images;
- ``learner_data``: Parquet data on learners;
- ``oakestra``: FLOps' applications in Oakestra;
- ``journeys``: the workflows that compose the others (doctor, bootstrap, fresh-start, demo);
- ``testbed``: the offline sandbox.
"""
