"""The test servers' helpers (``service/testing.py``)."""

from __future__ import annotations

from focal_eval.service.testing import free_port


def test_free_port_never_gives_the_same_port_twice() -> None:
    """Servers started together each get their own port (the kernel's probes repeat ports)."""
    ports = [free_port() for _ in range(1000)]
    assert len(set(ports)) == len(ports)
