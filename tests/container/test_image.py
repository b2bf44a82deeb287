"""The real Dockerfile, built and run with the podman shim in ../shared/container.

Builds the image, runs it with a mounted artifact directory, scores a batch, scrapes
/metrics, runs the HEALTHCHECK command, and sends SIGTERM during a request: the request
completes and the container exits 0. Prints the size the image adds to its base.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from focal_eval.focal import compute, update
from focal_eval.service.artifacts import default_artifact_dir
from focal_eval.service.testing import free_port
from tests.container.podman import docker, wait_ready

# each test itself: the session's image build (up to 900 s) and the containers' start are the
# fixtures', bounded by their own timeouts
pytestmark = pytest.mark.timeout(300, func_only=True)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped graphs with the manifest's default gamma changed to 1: proof of the mount."""
    directory = tmp_path_factory.mktemp("mounted") / "artifacts"
    shutil.copytree(default_artifact_dir(), directory)
    manifest_file = directory / "evaluation.onnx.manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["defaults"]["gamma"] = 1.0
    manifest_file.write_text(json.dumps(manifest))
    for path in (directory.parent, directory, *directory.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)  # readable by the image's user 10001
    return directory


@pytest.fixture(scope="module")
def container(image: str, artifacts: Path) -> Iterator[tuple[str, str]]:
    port = free_port()
    cid = docker(
        "run",
        "-d",
        "-e",
        f"FOCAL_PORT={port}",
        "-e",
        "FOCAL_ARTIFACT_DIR=/artifacts",
        "-v",
        f"{artifacts}:/artifacts:ro",
        image,
    ).stdout.strip()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, cid)
        yield cid, url
    finally:
        docker("rm", "-f", cid, check=False)


def test_image_has_no_torch_and_runs_as_a_fixed_non_root_user(container: tuple[str, str]) -> None:
    cid, _ = container
    assert docker("exec", cid, "id", "-u").stdout.strip() == "10001"
    probe = docker(
        "exec", cid, "python", "-c", "import importlib.util as u; print(u.find_spec('torch'))"
    )
    assert probe.stdout.strip() == "None"


def test_container_scores_with_the_mounted_graph_and_is_scraped(container: tuple[str, str]) -> None:
    _, url = container
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((200, 6)).astype(np.float32)
    labels = rng.integers(0, 6, 200)
    body = orjson.dumps({"logits": logits, "labels": labels}, option=orjson.OPT_SERIALIZE_NUMPY)
    response = httpx.post(
        f"{url}/score", content=body, headers={"content-type": "application/json"}, timeout=10
    )
    assert response.status_code == 200
    document = response.json()
    assert document["parameters"]["gamma"] == 1.0  # the mounted manifest's default
    expected = compute(update(torch.from_numpy(logits), torch.from_numpy(labels), gamma=1.0)[1])
    assert document["metrics"]["balanced_accuracy"] == pytest.approx(
        expected.balanced_accuracy.item(), rel=1e-9
    )
    assert document["metrics"]["mean_focal_loss"] == pytest.approx(
        expected.mean_focal_loss.item(), rel=1e-5
    )
    metrics = httpx.get(f"{url}/metrics", timeout=5).text
    assert 'focal_eval_samples_total{source="default"} 200.0' in metrics
    # the kernel was compiled in the build stage: every task scores on its fast path
    live = {
        sample.labels["task"]
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "focal_eval_fast_path"
        and sample.labels["focal_eval_fast_path"] == "live"
        and sample.value == 1
    }
    assert live == {"multiclass", "multilabel", "ranking"}
    # the dashboard and the Chart.js bundle the build stage fetched
    assert httpx.get(f"{url}/dashboard", timeout=5).status_code == 200
    chart = httpx.get(f"{url}/dashboard/assets/chart.umd.min.js", timeout=5)
    assert chart.text.startswith("/*!\n * Chart.js v4.")


def test_healthcheck_command_passes(container: tuple[str, str], image: str) -> None:
    cid, _ = container
    check = json.loads(
        docker("image", "inspect", image, "--format", "{{json .Config.Healthcheck}}").stdout
    )
    assert check["Test"][0] == "CMD"
    assert (
        docker(
            "exec", "-e", f"FOCAL_PORT={_port(cid)}", cid, *check["Test"][1:], check=False
        ).returncode
        == 0
    )
    assert (
        docker("exec", "-e", "FOCAL_PORT=1", cid, *check["Test"][1:], check=False).returncode != 0
    )


def _port(cid: str) -> str:
    environment: list[str] = json.loads(
        docker("inspect", cid, "--format", "{{json .Config.Env}}").stdout
    )
    return next(v.split("=", 1)[1] for v in environment if v.startswith("FOCAL_PORT="))


def test_sigterm_during_a_request_completes_it_and_exits_zero(image: str, artifacts: Path) -> None:
    port = free_port()
    cid = docker("run", "-d", "-e", f"FOCAL_PORT={port}", image).stdout.strip()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, cid)
        body = orjson.dumps(
            {"logits": np.zeros((500, 4), np.float32), "labels": np.arange(500) % 4},
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        half_sent, stopping = threading.Event(), threading.Event()

        def slowly() -> Iterator[bytes]:
            yield body[: len(body) // 2]
            half_sent.set()
            stopping.wait(timeout=10)
            time.sleep(1.0)  # SIGTERM has arrived by now
            yield body[len(body) // 2 :]

        outcome: dict[str, int] = {}

        def send() -> None:
            response = httpx.post(
                f"{url}/score",
                content=slowly(),
                headers={"content-type": "application/json"},
                timeout=30,
            )
            outcome["status"] = response.status_code

        client = threading.Thread(target=send)
        client.start()
        assert half_sent.wait(timeout=10)
        stopper = threading.Thread(target=lambda: docker("stop", "-t", "20", cid, timeout=60))
        stopper.start()
        stopping.set()
        client.join(timeout=30)
        stopper.join(timeout=60)
        assert outcome.get("status") == 200
        state = json.loads(docker("inspect", cid, "--format", "{{json .State}}").stdout)
        assert state["Status"] == "exited"
        assert state["ExitCode"] == 0
    finally:
        docker("rm", "-f", cid, check=False)
