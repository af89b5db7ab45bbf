"""What the stack publishes: every port on flops.stack.bind_address, nothing elsewhere."""

from __future__ import annotations

from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "compose"
BIND = "${FLOPS_BIND_ADDRESS:-0.0.0.0}:"


def test_every_published_port_is_bound_to_the_bind_address():
    published = []
    for path in sorted(COMPOSE.glob("*.compose.yml")):
        services = (yaml.safe_load(path.read_text()) or {}).get("services") or {}
        for name, service in services.items():
            for port in (service or {}).get("ports") or []:
                published.append((path.name, name, port))
    assert published, "no published ports found: did the compose files move?"
    unbound = [
        (f, s, p) for f, s, p in published if not (isinstance(p, str) and p.startswith(BIND))
    ]
    assert unbound == []
