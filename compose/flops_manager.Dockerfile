# The FLOps manager, built from an addon-FLOps checkout (build context:
# <checkout>/flops_manager_package) with the pins upstream leaves floating fixed:
# - python:3.10-slim-bookworm instead of -buster, whose apt sources are archived;
# - poetry pinned;
# - pymongo < 4.11: 4.11 dropped MongoDB 3.6, the version flops_db runs;
# - flops-utils from the same addon-FLOps ref as the checkout, not from `main`.
FROM python:3.10-slim-bookworm

ARG FLOPS_ADDON_REF=2fa0ab973b9d893b1d645b91d34297c468bdd36a
ARG FLOPS_ADDON_URL=https://github.com/oakestra/addon-FLOps.git

RUN apt-get update \
 && apt-get install -y --no-install-recommends git wget libnss3-tools \
 && rm -rf /var/lib/apt/lists/* \
 && pip install --no-cache-dir "poetry==1.8.3"

COPY pyproject.toml pyproject.toml
RUN poetry add --lock "pymongo>=4.6.3,<4.11" \
 && poetry install --no-root

WORKDIR /flops_manager
COPY flops_manager /flops_manager
RUN poetry install \
 && poetry add "git+${FLOPS_ADDON_URL}@${FLOPS_ADDON_REF}#subdirectory=utils_library"

ENV FLASK_ENV=development \
    FLASK_DEBUG=TRUE \
    FLOPS_MANAGER_PORT=5072 \
    FLOPS_IMAGE_REGISTRY_PORT=5073 \
    FLOPS_MQTT_BROKER_PORT=9027 \
    FLOPS_DB_PORT=10027 \
    FLOPS_MQTT_BROKER_URL=flops_mqtt \
    SYSTEM_MANAGER_PORT=10000
EXPOSE 5072

CMD ["poetry", "run", "python", "main.py"]
