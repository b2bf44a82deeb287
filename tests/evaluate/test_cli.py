"""``focal evaluate`` on real files written here: metrics equal scikit-learn on the whole data.

Parquet with fixed-size-list, list and per-class columns, Feather, ``.npz`` shards; slices
against a numpy group-by with scikit-learn; per-sample output against eager ``focal`` row by
row; every input error with its exact message and exit status; SIGINT and a flat RSS on the
real command.
"""

# ruff: noqa: E501 (tables of inputs and their exact messages, one per line)

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from sklearn import metrics as skm

from focal_eval.evaluate.cli import main
from focal_eval.service.testing import focal_server
from tests.service._inputs import label_batch
from tests.service.reference import eager

C = 5
FOCAL = [sys.executable, "-m", "focal_eval.service"]


def dataset(n: int, seed: int, ignore: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits favouring the label, labels (``ignore`` of them -100), a region per row."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, C, n)
    logits = rng.standard_normal((n, C)).astype(np.float32)
    logits[np.arange(n), labels] += 1.5
    labels[rng.choice(n, ignore, replace=False)] = -100
    return logits, labels, rng.choice(np.array(["eu", "us", "apac"]), n)


def fixed_list(logits: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(logits.reshape(-1)), logits.shape[1])


def write_parquet(path: Path, logits: np.ndarray, labels: np.ndarray, **extra: Any) -> Path:
    pq.write_table(
        pa.table({"logits": fixed_list(logits), "labels": labels, **extra}),
        path,
        row_group_size=700,
    )
    return path


def run(*argv: str) -> tuple[int, dict[str, Any] | None]:
    """``focal evaluate`` in process; its status and result."""
    out = Path(argv[argv.index("--out") + 1])
    status = main(list(argv))
    return status, json.loads(out.read_text()) if out.exists() else None


def assert_like_sklearn(result: dict[str, Any], logits: np.ndarray, labels: np.ndarray) -> None:
    valid = labels != -100
    y, predicted = labels[valid], logits[valid].argmax(axis=1)
    assert result["rows"] == len(labels)
    assert result["valid"] == int(valid.sum())
    np.testing.assert_array_equal(
        result["statistics"]["confusion_matrix"],
        skm.confusion_matrix(y, predicted, labels=range(C)),
    )
    assert result["metrics"]["accuracy"] == pytest.approx(
        skm.accuracy_score(y, predicted), abs=1e-12
    )
    assert result["metrics"]["balanced_accuracy"] == pytest.approx(
        skm.balanced_accuracy_score(y, predicted), abs=1e-12
    )
    assert result["metrics"]["macro_f1"] == pytest.approx(
        skm.f1_score(y, predicted, average="macro"), abs=1e-12
    )
    probabilities = np.exp(logits[valid] - logits[valid].max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    assert result["metrics"]["mean_cross_entropy"] == pytest.approx(
        skm.log_loss(y, probabilities, labels=range(C)), rel=1e-5
    )


def test_parquet_files_and_a_folder_give_the_metrics_of_all_rows(tmp_path: Path) -> None:
    parts = [dataset(2300, seed, ignore=40) for seed in (1, 2)]
    folder = tmp_path / "data"
    folder.mkdir()
    for i, (logits, labels, _) in enumerate(parts):
        write_parquet(folder / f"part-{i}.parquet", logits, labels)
    status, result = run(str(folder), "--out", str(tmp_path / "r.json"), "--batch-rows", "1000")
    assert status == 0
    assert result is not None
    assert [entry["rows"] for entry in result["inputs"]] == [2300, 2300]
    assert_like_sklearn(
        result, np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    )


def test_npy_shards_in_folders_and_globs_give_the_metrics_and_slices_of_all_rows(
    tmp_path: Path,
) -> None:
    parts = [dataset(1700, seed, ignore=30) for seed in (4, 5, 6)]
    for i, (logits, labels, group) in enumerate(parts):
        folder = tmp_path / "data" / f"part-{i}"
        folder.mkdir(parents=True)
        np.save(folder / "logits.npy", logits)
        np.save(folder / "labels.npy", labels)
        np.save(folder / "group.npy", group)
    logits, labels, group = (np.concatenate([p[k] for p in parts]) for k in range(3))
    out = str(tmp_path / "r.json")
    for paths in ([str(tmp_path / "data")], [str(tmp_path / "data" / "*" / "*.npy")]):
        status, result = run(*paths, "--out", out, "--batch-rows", "500", "--slice-by", "group")
        assert status == 0
        assert result is not None
        assert [entry["rows"] for entry in result["inputs"]] == [1700] * 3
        assert_like_sklearn(result, logits, labels)
        assert sorted(entry["by"]["group"] for entry in result["slices"]) == ["apac", "eu", "us"]
        for entry in result["slices"]:
            rows = group == entry["by"]["group"]
            valid = rows & (labels != -100)
            assert entry["rows"] == int(rows.sum())
            assert entry["metrics"]["accuracy"] == pytest.approx(
                skm.accuracy_score(labels[valid], logits[valid].argmax(axis=1)), abs=1e-12
            )


@pytest.mark.parametrize("layout", ["list", "per_class_columns", "feather", "npz", "npy"])
def test_every_layout_gives_the_same_metrics(tmp_path: Path, layout: str) -> None:
    logits, labels, _ = dataset(1500, 3, ignore=10)
    extra: list[str] = []
    if layout == "list":
        path = tmp_path / "d.parquet"
        pq.write_table(pa.table({"scores": pa.array(logits.tolist()), "y": labels}), path)
        extra = ["--logits", "scores", "--labels", "y"]
    elif layout == "per_class_columns":
        path = tmp_path / "d.parquet"
        # written out of order: columns are ordered by their number, p_10 would follow p_9
        columns = {f"p_{k}": logits[:, k] for k in reversed(range(C))}
        pq.write_table(pa.table({**columns, "labels": labels}), path)
        extra = ["--logits-prefix", "p_"]
    elif layout == "feather":
        path = tmp_path / "d.feather"
        feather.write_feather(pa.table({"logits": fixed_list(logits), "labels": labels}), path)
    elif layout == "npz":
        path = tmp_path / "d.npz"
        np.savez(path, logits=logits, labels=labels)
    else:
        path = tmp_path / "scores_0.npy"
        np.save(path, logits)
        np.save(tmp_path / "y_0.npy", labels)
        extra = ["--logits", "scores", "--labels", "y"]
    status, result = run(
        str(path), "--out", str(tmp_path / "r.json"), "--batch-rows", "400", *extra
    )
    assert status == 0
    assert result is not None
    assert_like_sklearn(result, logits, labels)


def test_multilabel_lists_of_targets(tmp_path: Path) -> None:
    logits, targets = label_batch(900, 4, seed=4)
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"logits": fixed_list(logits), "labels": fixed_list(targets)}), path)
    status, result = run(str(path), "--out", str(tmp_path / "r.json"), "--batch-rows", "250")
    assert status == 0
    assert result is not None
    predicted = (1 / (1 + np.exp(-logits.astype(np.float64))) >= 0.5).astype(int)
    assert (result["task"], result["num_labels"]) == ("multilabel", 4)
    for average in ("micro", "macro", "samples"):
        assert result["metrics"][f"{average}_f1"] == pytest.approx(
            skm.f1_score(targets, predicted, average=average, zero_division=0), abs=1e-12
        )
    assert result["metrics"]["subset_accuracy"] == pytest.approx(
        skm.accuracy_score(targets, predicted), abs=1e-12
    )


def test_slices_equal_a_group_by_with_sklearn(tmp_path: Path) -> None:
    logits, labels, region = dataset(3000, 5, ignore=30)
    tier = np.where(np.arange(3000) % 3 == 0, 1, 2)
    path = write_parquet(tmp_path / "s.parquet", logits, labels, region=region, tier=tier)
    status, result = run(
        str(path),
        "--out",
        str(tmp_path / "r.json"),
        "--slice-by",
        "region,tier",
        "--batch-rows",
        "800",
    )
    assert status == 0
    assert result is not None
    slices = {tuple(sorted(s["by"].items())): s for s in result["slices"]}
    frame = pd.DataFrame(
        {"region": region, "tier": tier, "label": labels, "predicted": logits.argmax(axis=1)}
    )
    expected = 0
    for by in (["region"], ["tier"], ["region", "tier"]):
        for values, group in frame.groupby(by):
            key = tuple(zip(by, values, strict=True))
            got, valid = slices[key], group[group.label != -100]
            assert got["rows"] == len(group), key
            assert got["metrics"]["accuracy"] == pytest.approx(
                skm.accuracy_score(valid.label, valid.predicted), abs=1e-12
            ), key
            assert got["metrics"]["macro_f1"] == pytest.approx(
                skm.f1_score(
                    valid.label, valid.predicted, average="macro", labels=range(C), zero_division=0
                ),
                abs=1e-12,
            ), key
            expected += 1
    assert len(slices) == expected == 3 + 2 + 6


def test_too_many_slices_is_an_input_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logits, labels, _ = dataset(50, 6)
    path = write_parquet(tmp_path / "s.parquet", logits, labels, id=np.arange(50))
    status, result = run(
        str(path), "--out", str(tmp_path / "r.json"), "--slice-by", "id", "--max-slices", "10"
    )
    assert (status, result) == (1, None)
    assert (
        capsys.readouterr().err
        == f"focal evaluate: {path}, rows 0-49: --slice-by id gives more than 10 slices (--max-slices)\n"
    )


def test_per_sample_output_is_row_aligned_with_the_ids(tmp_path: Path) -> None:
    logits, labels, _ = dataset(2100, 7, ignore=21)
    ids = np.arange(2100) * 7 + 3
    path = write_parquet(tmp_path / "p.parquet", logits, labels, id=ids)
    out = tmp_path / "per_sample.parquet"
    status, _ = run(
        str(path),
        "--out",
        str(tmp_path / "r.json"),
        "--per-sample-out",
        str(out),
        "--keep",
        "id",
        "--batch-rows",
        "500",
    )
    assert status == 0
    table = pq.read_table(out)
    np.testing.assert_array_equal(table.column("id").to_numpy(), ids)
    want = eager(logits, labels)
    np.testing.assert_allclose(
        table.column("focal_loss").to_numpy(), want["focal_loss"], rtol=1e-4, atol=1e-5
    )
    np.testing.assert_array_equal(table.column("prediction").to_numpy(), want["prediction"])


def corrupt(tmp_path: Path) -> Path:
    path = write_parquet(tmp_path / "c.parquet", *dataset(100, 8)[:2])
    path.write_bytes(path.read_bytes()[:200])
    return path


def nan_logits(tmp_path: Path) -> Path:
    logits, labels, _ = dataset(100, 9)
    logits[57, 2] = np.nan
    return write_parquet(tmp_path / "n.parquet", logits, labels)


def out_of_range(tmp_path: Path) -> Path:
    logits, labels, _ = dataset(100, 10)
    labels[63] = 7
    return write_parquet(tmp_path / "o.parquet", logits, labels)


def ragged(tmp_path: Path) -> Path:
    logits, labels, _ = dataset(10, 11)
    rows = logits.tolist()
    rows[4] = rows[4][:3]
    path = tmp_path / "r.parquet"
    pq.write_table(pa.table({"logits": pa.array(rows), "labels": labels}), path)
    return path


def widths_change(tmp_path: Path) -> Path:
    folder = tmp_path / "w"
    folder.mkdir()
    write_parquet(folder / "a.parquet", *dataset(10, 12)[:2])
    write_parquet(folder / "b.parquet", np.zeros((10, 3), np.float32), np.zeros(10, np.int64))
    return folder


def uneven_npz(tmp_path: Path) -> Path:
    path = tmp_path / "u.npz"
    np.savez(path, logits=np.zeros((10, 3), np.float32), labels=np.zeros(9, np.int64))
    return path


def uneven_npy(tmp_path: Path) -> Path:
    np.save(tmp_path / "logits_1.npy", np.zeros((10, 3), np.float32))
    np.save(tmp_path / "labels_1.npy", np.zeros(9, np.int64))
    return tmp_path / "logits_1.npy"


def empty(tmp_path: Path) -> Path:
    return write_parquet(
        tmp_path / "e.parquet", np.zeros((0, C), np.float32), np.zeros(0, np.int64)
    )


INPUT_ERRORS = [
    pytest.param(lambda p: write_parquet(p / "m.parquet", *dataset(10, 13)[:2]), ["--labels", "target"], "{path}: no column 'target' (columns: logits, labels)", id="missing_column"),
    pytest.param(nan_logits, [], "{path}, rows 0-99: logits: 1 values are NaN or infinite (first in row 57); a float64 value beyond the float32 range counts as infinite", id="nan_logits"),
    pytest.param(out_of_range, [], "{path}, rows 0-99: labels: 1 values outside [0, 5) that are not ignore_index (-100); first 7 at index 63", id="label_out_of_range"),
    pytest.param(ragged, [], "{path}, rows 0-9: logits has 3 values at row 4 of the block, 5 at its first: every row needs one per class or label", id="ragged_row"),
    pytest.param(widths_change, [], "{path}/b.parquet, rows 0-9: multiclass with 3 classes, but the rows before were multiclass with 5", id="width_changes_across_files"),
    pytest.param(uneven_npz, [], "{path}: logits has 10 rows, labels 9", id="shard_rows_differ"),
    pytest.param(uneven_npy, [], "{path}: 10 rows, but its labels file {path.parent}/labels_1.npy has 9", id="npy_shard_rows_differ"),
    pytest.param(empty, [], "{path}: no rows", id="empty_dataset"),
    pytest.param(lambda p: p / "absent.parquet", [], "{path}: no such file, folder or match", id="no_such_file"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "extra", "message"), INPUT_ERRORS)
def test_bad_input_is_status_1_naming_the_file_and_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Any, extra: list[str], message: str
) -> None:
    path = make(tmp_path)
    out = tmp_path / "r.json"
    status, result = run(str(path), "--out", str(out), *extra)
    assert (status, result) == (1, None)
    assert capsys.readouterr().err == f"focal evaluate: {message.format(path=path)}\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_corrupt_parquet_file_is_status_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = corrupt(tmp_path)
    status, _ = run(str(path), "--out", str(tmp_path / "r.json"))
    assert status == 1
    assert capsys.readouterr().err.startswith(f"focal evaluate: {path}: cannot be read (")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["x.parquet"], "focal evaluate: error: the following arguments are required: --out", id="no_out"),
        pytest.param(["x.parquet", "--out", "r.json", "--max-slices", "0"], "focal evaluate: error: argument --max-slices: expected an integer >= 1, got 0", id="zero_slices"),
        pytest.param(["x.parquet", "--out", "r.json", "--logits", "a", "--logits-prefix", "p"], "focal evaluate: error: argument --logits-prefix: not allowed with argument --logits", id="two_logits_sources"),
    ],
)  # fmt: skip
def test_usage_errors_are_status_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert message.replace("focal evaluate: error: ", "") in capsys.readouterr().err


def test_help_documents_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for option in (
        "--out",
        "--logits",
        "--logits-prefix",
        "--labels",
        "--task",
        "--inputs",
        "--gamma",
        "--alpha",
        "--threshold",
        "--ignore-index",
        "--num-classes",
        "--slice-by",
        "--max-slices",
        "--per-sample-out",
        "--keep",
        "--batch-rows",
        "--artifact-dir",
    ):
        assert option in text, option


def big_npz(path: Path, n: int) -> Path:
    rng = np.random.default_rng(14)
    np.savez(
        path,
        logits=rng.standard_normal((n, 100)).astype(np.float32),
        labels=rng.integers(0, 100, n),
    )
    return path


def test_sigint_leaves_no_output(tmp_path: Path) -> None:
    data = big_npz(tmp_path / "big.npz", 200_000)
    out, per_sample = tmp_path / "r.json", tmp_path / "p.parquet"
    argv = ["evaluate", str(data), "--out", str(out), "--per-sample-out", str(per_sample)]
    # SIGINT at its default, as in a terminal: a test run started in the background by a
    # script (`make test &`) inherits it ignored, and Python keeps an ignored SIGINT ignored
    interruptible = ["env", "--default-signal=INT"]
    process = subprocess.Popen(
        [*interruptible, *FOCAL, *argv, "--batch-rows", "16"], stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(".p.parquet.partial") for p in tmp_path.iterdir()):
        assert process.poll() is None, "finished before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.05)  # the per-sample file is being written: scoring has begun
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err.endswith("focal evaluate: interrupted; nothing written\n")
    assert list(tmp_path.iterdir()) == [data]


def peak_rss_kib(tmp_path: Path, data: Path) -> int:
    """VmHWM of one ``focal evaluate`` process, through a wrapper that waits for it."""
    code = (
        "import resource, subprocess, sys; "
        f"subprocess.run({[*FOCAL, 'evaluate', str(data), '--out', str(tmp_path / 'r.json'), '--batch-rows', '5000']!r}, check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        env={**os.environ},
    )
    return int(done.stdout.split()[-1])


@pytest.mark.parametrize("layout", ["parquet", "npy"])
def test_rss_does_not_grow_with_the_dataset(tmp_path: Path, layout: str) -> None:
    # .npz shards are loaded whole (numpy); Parquet and .npy are streamed a block at a time
    rng = np.random.default_rng(15)
    paths = []
    for name, n in (("small", 20_000), ("large", 200_000)):
        logits = rng.standard_normal((n, 50)).astype(np.float32)
        labels = rng.integers(0, 50, n)
        if layout == "parquet":
            path = tmp_path / f"{name}.parquet"
            table = pa.table({"logits": fixed_list(logits), "labels": labels})
            pq.write_table(table, path, row_group_size=5000)
        else:
            path = tmp_path / f"{name}_logits.npy"
            np.save(path, logits)
            np.save(tmp_path / f"{name}_labels.npy", labels)
        paths.append(path)
    small, large = paths
    ratio = peak_rss_kib(tmp_path, large) / peak_rss_kib(tmp_path, small)
    assert ratio <= 1.2, ratio


def assert_same_numbers(got: dict[str, Any], want: dict[str, Any], rtol: float) -> None:
    """Statistics and metrics of the whole and of every slice: counts exact, floats to rtol."""
    for one, other in [(got, want), *zip(got["slices"], want["slices"], strict=True)]:
        assert one.get("by") == other.get("by")
        for name, value in other["statistics"].items():
            np.testing.assert_allclose(one["statistics"][name], value, rtol=rtol, err_msg=name)
        for name, value in other["metrics"].items():
            assert one["metrics"][name] == pytest.approx(value, rel=rtol), name


def test_the_url_engine_gives_the_local_numbers(tmp_path: Path) -> None:
    logits, labels, region = dataset(2500, 16, ignore=25)
    path = write_parquet(tmp_path / "u.parquet", logits, labels, region=region)
    common = [str(path), "--slice-by", "region", "--batch-rows", "900", "--gamma", "1.5"]
    status, local = run(*common, "--out", str(tmp_path / "local.json"))
    with focal_server() as server:
        url_status, remote = run(*common, "--out", str(tmp_path / "url.json"), "--url", server.url)
        summary = httpx.get(server.url + "/summary").json()
    assert (status, url_status) == (0, 0)
    assert local is not None
    assert remote is not None
    assert remote["model"] == local["model"]
    assert remote["parameters"] == local["parameters"]
    assert_same_numbers(remote, local, 1e-12)
    assert summary["sources"] == {} or all(
        s["lifetime"]["samples"] == 0 for s in summary["sources"].values()
    )  # monitor=false: a batch job does not feed the production counters


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param(["--per-sample-out", "p.parquet"], "--per-sample-out needs the local engine: leave out --url", id="per_sample"),
        pytest.param(["--artifact-dir", "x"], "--artifact-dir is the local engine's: with --url the server's graphs score", id="artifact_dir"),
    ],
)  # fmt: skip
def test_url_engine_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    path = write_parquet(tmp_path / "x.parquet", *dataset(10, 17)[:2])
    status, _ = run(
        str(path), "--out", str(tmp_path / "r.json"), "--url", "http://127.0.0.1:9", *extra
    )
    assert status == 2
    assert capsys.readouterr().err == f"focal evaluate: {message}\n"


def test_an_unreachable_server_is_status_1_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = write_parquet(tmp_path / "x.parquet", *dataset(10, 18)[:2])
    started = time.monotonic()
    status, result = run(
        str(path), "--out", str(tmp_path / "r.json"), "--url", f"http://127.0.0.1:{port}"
    )
    assert (status, result) == (1, None)
    assert time.monotonic() - started < 10
    assert capsys.readouterr().err.startswith(
        f"focal evaluate: rows 0-9: POST http://127.0.0.1:{port}/score failed: "
    )


def test_the_ray_engine_gives_the_local_numbers(tmp_path: Path) -> None:
    """On a local Ray (2 CPUs: one actor, one CPU for the reads): counts exact, sums to 1e-7.

    Ray's batches end elsewhere than the local blocks, and onnxruntime's vectorised exp gives
    the last elements of a run (its scalar tail) values an ulp away: float32 per-element values,
    so float sums agree to about 1e-8 (the URL engine, same blocks, agrees to 1e-12).
    """
    parts = [dataset(1200, seed, ignore=12) for seed in (19, 20)]
    for i, (logits, labels, region) in enumerate(parts):
        write_parquet(tmp_path / f"part-{i}.parquet", logits, labels, region=region)
    common = [str(tmp_path / "part-*.parquet"), "--slice-by", "region", "--batch-rows", "500"]
    status, local = run(*common, "--out", str(tmp_path / "local.json"))
    ray_status, on_ray = run(*common, "--out", str(tmp_path / "ray.json"), "--engine", "ray")
    assert (status, ray_status) == (0, 0)
    assert local is not None
    assert on_ray is not None
    assert on_ray["inputs"] == local["inputs"]
    assert on_ray["model"] == local["model"]
    assert_same_numbers(on_ray, local, 1e-7)


@pytest.mark.parametrize(
    ("extra", "message", "status"),
    [
        pytest.param(["--engine", "ray", "--ray-address", "127.0.0.1:{port}"], "--ray-address 127.0.0.1:{port}: no Ray there (no answer within 5 s:", 1, id="no_ray_there"),
        pytest.param(["--ray-address", "127.0.0.1:1"], "--ray-address needs --engine ray", 2, id="address_without_ray"),
        pytest.param(["--engine", "ray", "--url", "http://127.0.0.1:1"], "--url and --engine ray are two engines: give one", 2, id="two_engines"),
    ],
)  # fmt: skip
def test_ray_engine_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str, status: int
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = write_parquet(tmp_path / "x.parquet", *dataset(10, 21)[:2])
    started = time.monotonic()
    got, _ = run(
        str(path), "--out", str(tmp_path / "r.json"), *(e.format(port=port) for e in extra)
    )
    assert got == status
    assert time.monotonic() - started < 15
    assert capsys.readouterr().err.startswith(f"focal evaluate: {message.format(port=port)}")


def test_the_ray_engine_reads_parquet_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, logits=np.zeros((4, 3), np.float32), labels=np.zeros(4, np.int64))
    status, _ = run(str(path), "--out", str(tmp_path / "r.json"), "--engine", "ray")
    assert status == 2
    assert (
        capsys.readouterr().err == f"focal evaluate: --engine ray reads Parquet files; not {path}\n"
    )


def test_null_slice_values_are_one_slice_and_integers_stay_integers(tmp_path: Path) -> None:
    logits, labels, _ = dataset(600, 22)
    tier = pa.array([None if i % 5 == 0 else i % 3 for i in range(600)], pa.int64())
    path = write_parquet(tmp_path / "n.parquet", logits, labels, tier=tier)
    status, result = run(str(path), "--out", str(tmp_path / "r.json"), "--slice-by", "tier")
    assert status == 0
    assert result is not None
    assert [s["by"]["tier"] for s in result["slices"]] == [0, 1, 2, None]
    nulls = np.arange(600) % 5 == 0
    assert result["slices"][-1]["rows"] == int(nulls.sum())
    predicted = logits[nulls].argmax(axis=1)
    assert result["slices"][-1]["metrics"]["accuracy"] == pytest.approx(
        skm.accuracy_score(labels[nulls], predicted), abs=1e-12
    )


def saved(path: Path) -> Path:
    np.save(path, np.zeros((4, 3), np.float32))
    return path


def truncated_npy(tmp_path: Path) -> Path:
    path = tmp_path / "logits.npy"
    np.save(path, np.zeros((100, 3), np.float32))
    path.write_bytes(path.read_bytes()[:-40])
    np.save(tmp_path / "labels.npy", np.zeros(100, np.int64))
    return path


def scalar_npz(path: Path) -> Path:
    np.savez(path, logits=np.float32(1.0), labels=np.int64(0))
    return path


BAD_SHAPES = [
    pytest.param(lambda p: pq.write_table(pa.table({"p_0": [0.1], "p_2": [0.3], "p_3": [0.2], "labels": [0]}), p / "g.parquet") or p / "g.parquet", ["--logits-prefix", "p_"], "{path}: columns p_0 to p_2 expected, one per class; p_1 missing or misnamed (found: p_0, p_2, p_3)", id="prefix_gap"),
    pytest.param(lambda p: scalar_npz(p / "s.npz"), [], "{path}: logits is one value, not an array of rows", id="npz_scalar"),
    pytest.param(lambda p: (p / "b.npz").write_bytes(b"PK\x03\x04broken") and p / "b.npz", [], "{path}: cannot be read (", id="npz_broken"),
    pytest.param(lambda p: saved(p / "logits.npy"), [], "{path}: no labels file {path.parent}/labels.npy beside it", id="npy_no_partner"),
    pytest.param(lambda p: saved(p / "scores.npy"), [], "{path}: a .npy shard's file name must contain the logits array's name 'logits' (--logits), e.g. logits_000.npy beside labels_000.npy", id="npy_unnamed"),
    pytest.param(truncated_npy, [], "{path}: ends early (truncated at", id="npy_truncated"),
    pytest.param(lambda p: (p / "logits.npy").write_bytes(b"not numpy") and p / "logits.npy", [], "{path}: not a .npy file (", id="npy_not_numpy"),
    pytest.param(lambda p: write_parquet(p / "f.parquet", *dataset(10, 23)[:2], score=np.linspace(0, 1, 10)), ["--slice-by", "score"], "{path}, rows 0-9: --slice-by score holds double; slice by integers, strings or booleans", id="float_slice"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "extra", "message"), BAD_SHAPES)
def test_more_bad_inputs_are_status_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Any, extra: list[str], message: str
) -> None:
    path = make(tmp_path)
    status, result = run(str(path), "--out", str(tmp_path / "r.json"), *extra)
    assert (status, result) == (1, None)
    assert capsys.readouterr().err.startswith(f"focal evaluate: {message.format(path=path)}")


def test_an_output_folder_that_is_not_there_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_parquet(tmp_path / "x.parquet", *dataset(10, 24)[:2])
    status = main([str(path), "--out", str(tmp_path / "nowhere" / "r.json")])
    assert status == 2
    assert (
        capsys.readouterr().err
        == f"focal evaluate: --out: no folder {tmp_path / 'nowhere'} to write r.json in\n"
    )


def test_npz_shards_with_one_array_a_class(tmp_path: Path) -> None:
    logits, labels, _ = dataset(700, 25, ignore=7)
    path = tmp_path / "p.npz"
    arrays: dict[str, Any] = {f"p_{k}": logits[:, k] for k in range(C)}
    np.savez(path, labels=labels, **arrays)
    status, result = run(str(path), "--out", str(tmp_path / "r.json"), "--logits-prefix", "p_")
    assert status == 0
    assert result is not None
    assert_like_sklearn(result, logits, labels)
