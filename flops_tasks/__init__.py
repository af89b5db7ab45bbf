"""flops-tasks: prepare an Oakestra cluster for federated learning with FLOps."""

__version__ = "0.1.0"
