"""The wheel, as a user installs it: in a fresh venv, without torch, beside other packages.

The wheel is built from a copy of the checkout and installed with pip into a new virtual
environment (its dependencies from the package index, as a user's would be); every check runs
the installed ``focal`` or ``python`` there, from a folder outside the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from focal_eval.service.testing import focal_spec, serve
from tests.preparations import Preparations
from tests.wheel import (
    NOT_COPIED_PATTERNS,
    REPOSITORY,
    RUN_TIMEOUT_S,
    Installed,
    WheelInstall,
    build_wheel,
)

EXPORT_MESSAGE = (
    "focal export needs the export extra (torch, onnx, onnxscript missing):"
    " pip install 'focal-eval[export]'\n"
)
REPORT_MESSAGE = (
    "focal report needs the report extra (matplotlib missing): pip install 'focal-eval[report]'\n"
)
DEAD_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused


def test_an_offline_build_leaves_out_the_kernel_and_the_charts(tmp_path: Path) -> None:
    """No registry reachable, nothing cached: the wheel still builds, as README says."""
    source = tmp_path / "source"
    built = shutil.ignore_patterns(*NOT_COPIED_PATTERNS, "*.so", "chart.*")
    shutil.copytree(REPOSITORY, source, symlinks=True, ignore=built)
    environment = {k: v for k, v in os.environ.items() if k != "FOCAL_ORT_INCLUDE"}
    proxies = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
    environment |= dict.fromkeys(proxies, DEAD_PROXY) | {"NO_PROXY": "", "no_proxy": ""}
    environment["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    wheel = build_wheel(source, tmp_path / "dist", "--no-build-isolation", env=environment)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "focal_eval/service/dashboard/assets/dashboard.js" in names
    assert not [name for name in names if name.endswith(".so") or "chart." in name]


@pytest.fixture(scope="session")
def installed(preparations: Preparations) -> Installed:
    """The wheel built from a copy of the checkout, pip-installed in a fresh venv."""
    return preparations.take("installed", WheelInstall).finish()


def test_the_wheel_holds_one_top_level_name(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        top = {name.split("/")[0] for name in wheel.namelist()}
        top_level = [n for n in wheel.namelist() if n.endswith("top_level.txt")]
        assert top == {"focal_eval", "focal_eval-0.1.0.dist-info"}
        assert not top_level or wheel.read(top_level[0]).split() == [b"focal_eval"]
        shipped = {n for n in wheel.namelist() if n.startswith("focal_eval/service/artifacts/")}
    assert {Path(n).name for n in shipped} >= {
        "evaluation.onnx",
        "evaluation.onnx.manifest.json",
        "metrics.onnx",
        "metrics.onnx.manifest.json",
    }


def test_every_module_of_the_checkout_is_in_the_wheel(installed: Installed) -> None:
    """A new subpackage must be in pyproject.toml's ``packages``: this finds one that is not."""
    checkout = {
        f"focal_eval/{path.relative_to(REPOSITORY).as_posix()}"
        for folder in ("focal", "export", "service", "evaluate", "report")
        for path in (REPOSITORY / folder).rglob("*.py")
        if "__pycache__" not in path.parts
    }
    with zipfile.ZipFile(installed.wheel) as wheel:
        assert checkout - set(wheel.namelist()) == set()


def test_generic_names_are_not_importable_and_torch_is_absent(installed: Installed) -> None:
    probe = installed.python(
        "import importlib.util as u, json, sys\n"
        "import focal_eval.service.app, focal_eval.service.cli\n"
        "print(json.dumps({\n"
        "  'generic': {n: u.find_spec(n) is not None for n in ('focal', 'export', 'service')},\n"
        "  'torch': u.find_spec('torch') is not None or 'torch' in sys.modules,\n"
        "  'service': focal_eval.service.app.__file__,\n"
        "}))"
    )
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    assert found["generic"] == {"focal": False, "export": False, "service": False}
    assert found["torch"] is False
    assert Path(found["service"]).is_relative_to(installed.venv)


def test_installed_focal_serve_scores(installed: Installed) -> None:
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(64, 4))
    labels = rng.integers(0, 4, 64)
    body = json.dumps({"logits": logits.tolist(), "labels": labels.tolist(), "gamma": 2.0})
    spec = focal_spec(focal=[installed.bin("focal")])
    with serve(spec) as (server,):
        request = urllib.request.Request(
            server.url + "/score", body.encode(), {"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=RUN_TIMEOUT_S) as response:
            result = json.loads(response.read())
        # the wheel carries the dashboard's assets, Chart.js among them (setup.py's build_py)
        for asset in ("dashboard.js", "chart.umd.min.js"):
            url = f"{server.url}/dashboard/assets/{asset}"
            with urllib.request.urlopen(url, timeout=RUN_TIMEOUT_S) as response:
                assert response.status == 200, asset
    # float64 references: softmax focal loss, -(1 - p)^gamma log p at the label; sklearn
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = (shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True)))[np.arange(64), labels]
    focal_loss = -((1 - np.exp(log_p)) ** 2.0) * log_p
    np.testing.assert_allclose(result["per_sample"]["focal_loss"], focal_loss, rtol=1e-5)
    assert result["metrics"]["balanced_accuracy"] == pytest.approx(
        balanced_accuracy_score(labels, logits.argmax(axis=1)), abs=1e-12
    )


def test_torch_commands_name_the_extra(installed: Installed) -> None:
    export = installed.run(installed.bin("focal"), "export", "--out", "artifacts")
    assert (export.returncode, export.stdout, export.stderr) == (2, "", EXPORT_MESSAGE)
    report = installed.run(installed.bin("focal"), "report", "r.json", "--out", "r.html")
    assert (report.returncode, report.stdout, report.stderr) == (2, "", REPORT_MESSAGE)
    library = installed.python("import focal_eval.focal")
    assert library.returncode == 1
    assert library.stderr.splitlines()[-1] == (
        "ModuleNotFoundError: focal_eval.focal needs torch, which is not installed:"
        " pip install 'focal-eval[torch]'"
    )


def test_another_service_package_beside_it_changes_nothing(
    installed: Installed, tmp_path: Path
) -> None:
    """A distribution with its own top-level ``service`` neither replaces nor breaks ``focal``."""
    acme = tmp_path / "acme"
    (acme / "service").mkdir(parents=True)
    (acme / "service" / "__init__.py").write_text("raise SystemExit('acme cli')\n")
    (acme / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=77"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "acme-service"\nversion = "1.0"\n'
        '[tool.setuptools]\npackages = ["service"]\n'
    )
    acme_wheel = build_wheel(acme, tmp_path / "dist")
    pip = [installed.bin("python"), "-m", "pip", "--quiet"]
    for step in (["install", "--no-deps", str(acme_wheel)], ["uninstall", "-y", "acme-service"]):
        assert installed.run(*pip, *step).returncode == 0
        usage = installed.run(installed.bin("focal"), "serve", "--help")
        assert (usage.returncode, usage.stderr) == (0, "")
        assert "FOCAL_ARTIFACT_DIR" in usage.stdout
        check = installed.run(*pip, "check")
        assert check.returncode == 0, check.stdout
