"""The checkout's tasks for the stock ``inv``: the package's own collection
(flops_tasks/collection.py), the one the installed ``flops`` command runs."""

from flops_tasks.collection import ns  # noqa: F401
