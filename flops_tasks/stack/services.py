"""The management suite's identity: its services, the host ports each publishes, its
volumes and labels. One table every check reads; it imports nothing, so configuration and
every layer of the stack can use it.
"""

from __future__ import annotations

MANAGER = "flops_manager"
REGISTRY = "flops_image_registry"
MQTT = "flops_mqtt"
FLOPS_DB_SERVICE = "flops_db"
BACKEND_STORE = "mlflow_backend_store"
ARTIFACT_STORE = "vsftpd_server"

# service -> the host ports it publishes; the one table every check reads
PORTS: dict[str, tuple[int, ...]] = {
    MANAGER: (5072,),
    REGISTRY: (5073,),
    MQTT: (9027,),
    FLOPS_DB_SERVICE: (10027,),
    BACKEND_STORE: (3306,),
    ARTIFACT_STORE: (20, 21, *range(21100, 21111)),
}
SERVICES = tuple(PORTS)
# what whoever reaches a service's published ports gets: upstream's fixed credentials, or none
EXPOSED: dict[str, str] = {
    BACKEND_STORE: "MySQL root/oakestra, every privilege",
    ARTIFACT_STORE: "FTP flops/flops, read and write",
    FLOPS_DB_SERVICE: "Mongo without authentication",
    REGISTRY: "registry without authentication, push and pull",
    MANAGER: "FLOps manager API without authentication, its container mounts docker.sock",
    MQTT: "MQTT, anonymous",
}
MANAGER_PORT = PORTS[MANAGER][0]
FLOPS_DB_PORT = PORTS[FLOPS_DB_SERVICE][0]
MQTT_PORT = PORTS[MQTT][0]
# FLOps' manager names every image FLOPS_IMAGE_REGISTRY_IP:5073/...: the port is not ours to pick
REGISTRY_PORT = PORTS[REGISTRY][0]
FTP_PORT = 21
# volume key in the compose file -> what it holds
VOLUMES = {
    "registry_data": "FLOps registry images",
    "flops_db": "FLOps manager database (Mongo)",
    "mlflow_backend_store_data": "MLflow backend database (MySQL)",
    "vsftpd_home": "MLflow artifacts (FTP)",
    "vsftpd_logs": "FTP logs",
    "flops_mqtt_data": "MQTT broker persistence",
}
# volume key -> the service that mounts it
VOLUME_OWNERS = {
    "registry_data": REGISTRY,
    "flops_db": FLOPS_DB_SERVICE,
    "mlflow_backend_store_data": BACKEND_STORE,
    "vsftpd_home": ARTIFACT_STORE,
    "vsftpd_logs": ARTIFACT_STORE,
    "flops_mqtt_data": MQTT,
}
OUR_LABEL = "org.flops-tasks.stack"  # set on every service by our compose file
FLOPS_DB = "flops"  # the Mongo database of the FLOps manager
STACK = "stack"  # the host column of the stack's outcomes
