"""The image under a pod's memory limit, against what hostile and careless clients do.

The container runs as the README's Kubernetes example does (``--memory 512m``, no swap, a
read-only root filesystem, no capabilities). For at least 60 s, 16 clients each repeat one
behaviour: classes past the cap, huge declared lengths, slow readers, stalled uploads, one-row
floods, big npz bodies, C x C work at the cap, gzip bombs, oversized headers, hang-ups
(``tests/container/hostile_clients.py``, run niced: in a pod the clients would not share the
server's CPUs). A separate process asks ``/healthz`` every 50 ms. The container must never be
killed, every request must end with 200, a 4xx or 503 (or with the connection cut where that
is the documented answer), ``/healthz`` must answer within 100 ms (p99), and afterwards a
normal request must score exactly as eager focal/ does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator

import httpx
import numpy as np
import orjson
import pytest
import torch

from focal_eval.focal import compute, update
from focal_eval.service.core.tasks import MULTICLASS
from focal_eval.service.memory import costs
from focal_eval.service.testing import free_port
from tests.container.hostile_clients import TIMEOUT_S
from tests.container.podman import ROOT, docker, wait_ready

DURATION_S = 60.0
CLIENTS = 16
MIB = 2**20
PROBE = """
import http.client, json, sys, time
port, duration = int(sys.argv[1]), float(sys.argv[2])
latencies, failures, end = [], [], time.monotonic() + duration
while time.monotonic() < end:
    start = time.monotonic()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/healthz")
        status = connection.getresponse().status
        connection.close()
        (latencies if status == 200 else failures).append(time.monotonic() - start)
    except OSError as error:
        failures.append(repr(error))
    time.sleep(max(0.0, 0.05 - (time.monotonic() - start)))
print(json.dumps({"latencies": latencies, "failures": failures}))
"""


ALLOWED = {
    "classes_past_the_cap": {"422", "503"},
    "huge_declared_length": {"408", "413", "503"},
    # "closed": refused at the connection cap, or cut (a response never read, an upload that
    # went on more than 2 s after its early answer)
    "slow_reader": {"200", "503", "closed"},
    "stalled_upload": {"408", "503", "closed"},
    "one_row_flood": {"200", "200,503", "503"},
    "big_npz": {"200", "408", "503"},  # 408: a 40 MB upload slowed past the body timeout
    "classes_at_the_cap": {"200", "503"},
    "gzip_bomb": {"400", "413", "503"},  # 400: an archive's header, then 200 MiB of zeros
    "oversized_headers": {"431"},
    "hang_up_mid_body": {"closed"},
}


@pytest.fixture
def container(image: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    settings = {
        "FOCAL_PORT": str(port),
        "FOCAL_BODY_TIMEOUT_S": str(TIMEOUT_S),
        "FOCAL_HEADER_TIMEOUT_S": str(TIMEOUT_S),
        "FOCAL_WRITE_TIMEOUT_S": str(TIMEOUT_S),
    }
    environment = [arg for name, value in settings.items() for arg in ("-e", f"{name}={value}")]
    cid = docker(
        "run",
        "-d",
        "--memory",
        "512m",
        "--memory-swap",
        "512m",
        "--read-only",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        *environment,
        image,
    ).stdout.strip()
    try:
        wait_ready(f"http://127.0.0.1:{port}", cid)
        yield cid, port
    finally:
        docker("rm", "-f", cid, check=False)


# the test itself: the session's image build (its first use, up to 900 s) is the fixtures'
@pytest.mark.timeout(300, func_only=True)
def test_image_under_512m_survives_a_hostile_load_and_still_scores(
    container: tuple[str, int],
) -> None:
    cid, port = container
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    budget = next(
        float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith("focal_eval_memory_budget_bytes ")
    )
    print(f"\nmemory budget for requests in a 512 MiB container: {budget / MIB:.0f} MiB")
    # what the README promises: work at the class cap (N=1, C=2048) fits in such a pod
    assert budget >= costs.scoring(MULTICLASS, 1, 2048, 0) + costs.received(MIB)
    # the probe's pipe is closed and the probe waited for even if the load fails
    with subprocess.Popen(
        [sys.executable, "-c", PROBE, str(port), str(DURATION_S + 2)],
        stdout=subprocess.PIPE,
        text=True,
    ) as probe:
        load = subprocess.run(
            [sys.executable, "-m", "tests.container.hostile_clients", str(port),
             str(DURATION_S), str(CLIENTS)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=DURATION_S + 120,
            check=True,
            preexec_fn=lambda: os.nice(10),  # the clients share this machine's CPUs with the pod
        )  # fmt: skip
        health = json.loads(probe.communicate(timeout=60)[0])
    outcomes = Counter({(name, outcome): count for name, outcome, count in json.loads(load.stdout)})

    state = json.loads(docker("inspect", cid, "--format", "{{json .State}}").stdout)
    usage = docker(
        "exec", cid, "cat", "/sys/fs/cgroup/memory/memory.max_usage_in_bytes", check=False
    ).stdout.strip()
    latencies = sorted(health["latencies"])
    p99 = latencies[int(0.99 * (len(latencies) - 1))]
    print(f"\noutcomes: {dict(sorted(outcomes.items()))}")
    print(
        f"healthz: {len(latencies)} answers, p50 {latencies[len(latencies) // 2] * 1e3:.1f} ms,"
        f" p99 {p99 * 1e3:.1f} ms, max {latencies[-1] * 1e3:.1f} ms;"
        f" failures {Counter(health['failures']).most_common(3)}"
    )
    peak = f"{int(usage) / MIB:.0f} MiB" if usage.isdigit() else usage
    print(f"container peak memory: {peak} of 512 MiB")
    assert state["Running"] is True, state
    assert state["OOMKilled"] is False, state
    unexpected = {key: count for key, count in outcomes.items() if key[1] not in ALLOWED[key[0]]}
    assert not unexpected, unexpected
    served = [outcome for name, outcome in outcomes if name == "one_row_flood"]
    assert any(outcome.startswith("200") for outcome in served)  # ordinary traffic got through
    assert not health["failures"], health["failures"]
    assert p99 <= 0.1

    rng = np.random.default_rng(7)
    logits = rng.standard_normal((300, 5)).astype(np.float32)
    labels = rng.integers(0, 5, 300)
    body = orjson.dumps({"logits": logits, "labels": labels}, option=orjson.OPT_SERIALIZE_NUMPY)
    response = httpx.post(
        f"http://127.0.0.1:{port}/score",
        content=body,
        params={},
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    expected = compute(update(torch.from_numpy(logits), torch.from_numpy(labels), gamma=2.0)[1])
    got = response.json()["metrics"]
    assert got["balanced_accuracy"] == pytest.approx(expected.balanced_accuracy.item(), rel=1e-9)
    assert got["mean_focal_loss"] == pytest.approx(expected.mean_focal_loss.item(), rel=1e-5)
