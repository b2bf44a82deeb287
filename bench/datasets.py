"""``focal evaluate`` on a generated Parquet dataset, against scripts that compute the same.

A script is what a user writes without the command: read the whole file with pyarrow, then
numpy softmax and scikit-learn's metrics (``bench.baselines.sklearn_metrics``); or stream it
through torchmetrics (six of the same metrics, on two torch threads). Both run as
fresh processes, so that each one's peak RSS is its own; rows/s come from their wall time,
start-up included. Peak RSS of the command at N and 10 N rows shows that memory does not grow
with the dataset.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.report import Section, Target, single
from bench.timing import Candidate, interleave
from focal_eval.service.testing import focal_server

CLASSES = 100
OURS = "focal evaluate (local)"
OURS_SMALL = "focal evaluate (local), N / 10 rows"
PACKAGES = ("focal", "export", "service", "evaluate", "report")
SCRIPT_RUN = "pyarrow + numpy + scikit-learn script"
TORCHMETRICS_RUN = "torchmetrics, streamed (6 of the metrics)"
ROWS, QUICK_ROWS = 2_000_000, 100_000
PART = 100_000  # rows generated and written at a time
SCRIPT = """
import sys
import numpy as np
import pyarrow.parquet as pq
from bench.baselines.sklearn_metrics import sklearn_metrics
table = pq.read_table(sys.argv[1])
logits = table.column("logits").combine_chunks().flatten().to_numpy().reshape(len(table), -1)
sklearn_metrics(logits, table.column("labels").to_numpy())
"""


TORCHMETRICS = """
import sys
import numpy as np
import pyarrow.parquet as pq
import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy, MulticlassCalibrationError, MulticlassConfusionMatrix,
    MulticlassF1Score, MulticlassMatthewsCorrCoef, MulticlassRecall,
)
torch.set_num_threads(2)
c = int(sys.argv[2])
metrics = MetricCollection({
    "accuracy": MulticlassAccuracy(c, average="micro"),
    "balanced_accuracy": MulticlassRecall(c, average="macro"),
    "macro_f1": MulticlassF1Score(c, average="macro"),
    "confusion_matrix": MulticlassConfusionMatrix(c),
    "matthews_corrcoef": MulticlassMatthewsCorrCoef(c),
    "expected_calibration_error": MulticlassCalibrationError(c, n_bins=15),
})
for batch in pq.ParquetFile(sys.argv[1], pre_buffer=False).iter_batches(65536):
    n = batch.num_rows
    logits = batch.column("logits").flatten().to_numpy().reshape(n, c)
    labels = batch.column("labels").to_numpy()
    with torch.inference_mode():
        metrics.update(torch.from_numpy(logits).softmax(1), torch.from_numpy(labels))
metrics.compute()
"""


def write_dataset(path: Path, rows: int) -> None:
    """Logits favouring the label, in row groups of 64K rows."""
    rng = np.random.default_rng(0)
    schema = pa.schema([("logits", pa.list_(pa.float32(), CLASSES)), ("labels", pa.int64())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, PART):
            n = min(PART, rows - start)
            labels = rng.integers(0, CLASSES, n)
            logits = rng.standard_normal((n, CLASSES), dtype=np.float32)
            logits[np.arange(n), labels] += 2.0
            flat = pa.FixedSizeListArray.from_arrays(pa.array(logits.reshape(-1)), CLASSES)
            writer.write_table(pa.table({"logits": flat, "labels": labels}, schema=schema))


def timed(argv: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one fresh process."""
    code = (
        "import resource, subprocess, sys, time; t = time.monotonic(); "
        f"subprocess.run({argv!r}, check=True, stdout=subprocess.DEVNULL,"
        " stderr=subprocess.DEVNULL); "
        "print(time.monotonic() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, kib = done.stdout.split()
    return float(seconds), int(kib) * 1024


def compile_sources() -> None:
    """Byte-compile the project's modules, as pip does for an installed package.

    An editable install under ``PYTHONDONTWRITEBYTECODE`` (this machine sets it) compiles the
    command's 80-odd modules in every fresh process (0.05 s) where the script's libraries,
    installed by pip, come compiled.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for name in PACKAGES:
        for folder in importlib.import_module(f"focal_eval.{name}").__path__:
            subprocess.run([sys.executable, "-m", "compileall", "-q", folder], check=True, env=env)


def run(quick: bool) -> Section:
    """Rows/s of the command and of the script; RSS of the command at N and N / 10."""
    section = Section("datasets", "focal evaluate on Parquet, fresh processes")
    rows = QUICK_ROWS if quick else ROWS
    compile_sources()
    with tempfile.TemporaryDirectory(prefix="focal-bench-") as directory:
        big, small = Path(directory) / "big.parquet", Path(directory) / "small.parquet"
        write_dataset(big, rows)
        write_dataset(small, rows // 10)
        command = [sys.executable, "-m", "focal_eval.service", "evaluate"]
        out = str(Path(directory) / "result.json")
        case = f"N={rows} C={CLASSES}"
        peaks: dict[str, list[int]] = {}

        def process(name: str, argv: list[str]) -> Candidate:
            def once() -> object:
                seconds, peak = timed(argv)
                peaks.setdefault(name, []).append(peak)
                return seconds

            return once

        runs = interleave(
            {
                OURS: process(OURS, [*command, str(big), "--out", out]),
                SCRIPT_RUN: process(SCRIPT_RUN, [sys.executable, "-c", SCRIPT, str(big)]),
                TORCHMETRICS_RUN: process(
                    TORCHMETRICS_RUN, [sys.executable, "-c", TORCHMETRICS, str(big), str(CLASSES)]
                ),
                OURS_SMALL: process(OURS_SMALL, [*command, str(small), "--out", out]),
            },
            1 if quick else 3,
            min_rounds=1 if quick else 3,
            warmup=0,
        )
        ours_rss, small_rss = (float(np.median(peaks[name])) for name in (OURS, OURS_SMALL))
        on_ray, _ = timed([*command, str(small), "--out", out, "--engine", "ray"])
        with focal_server() as server:
            by_url, _ = timed([*command, str(small), "--out", out, "--url", server.url])
        local_small = runs.median(OURS_SMALL)
    for name in (OURS, SCRIPT_RUN, TORCHMETRICS_RUN):
        section.add(case, name, runs.median(name), "s")
    section.add(case, "focal evaluate peak RSS", ours_rss / 2**20, "MiB")
    section.add(case, f"focal evaluate peak RSS, {rows // 10} rows", small_rss / 2**20, "MiB")
    section.compare(
        case, "rows/s: focal evaluate / script", runs.ratio(SCRIPT_RUN, OURS), Target(">=", 10)
    )
    section.compare(
        case,
        "rows/s: focal evaluate / torchmetrics",
        runs.ratio(TORCHMETRICS_RUN, OURS),
        Target(">=", 1),
    )
    section.compare(
        case, "peak RSS: N / (N / 10) rows", single(ours_rss / small_rss), Target("<=", 1.2)
    )
    small_case = f"N={rows // 10} C={CLASSES}"
    section.add(small_case, "focal evaluate (local)", local_small, "s")
    section.add(small_case, "focal evaluate --engine ray (local Ray, 2 CPUs)", on_ray, "s")
    section.add(small_case, "focal evaluate --url (a server on loopback)", by_url, "s")
    section.compare(small_case, "time: ray / local", single(on_ray / local_small))
    section.compare(small_case, "time: url / local", single(by_url / local_small))
    section.notes.append(
        "wall time of fresh processes, start-up included, the project's modules byte-compiled"
        " first; the command on both files, the script and torchmetrics in three alternating"
        " rounds (paired ratios, median peak RSS), ray and url one run each"
    )
    return section
