"""The evaluation graph inside onnxruntime: its costliest nodes, and other session options.

The node profile uses onnxruntime's own profiler (``enable_profiling``): kernel time per node
and per operator type, summed over a few runs. The options comparison times the graph,
interleaved, under the service's options (CPU memory arena off, intra-op spinning on) and
under alternatives, as ratios to the service's.
"""

from __future__ import annotations

import collections
import json
import tempfile
from pathlib import Path
from typing import Any

import onnxruntime

from bench.compute import graph_feeds
from bench.data import case_name, make_batch
from bench.timing import Candidate, interleave
from focal_eval.service.artifacts import default_artifact_dir, find_artifact

THREADS = 2


def session(arena: bool, spinning: bool, profile_prefix: str | None = None) -> Any:
    """An evaluation-graph session like the service's, with the given options changed."""
    artifact = find_artifact(default_artifact_dir(), "evaluation")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = arena
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return onnxruntime.InferenceSession(
        artifact.content, options, providers=["CPUExecutionProvider"]
    )


def node_profile(n: int, c: int, runs: int = 5, top: int = 12) -> dict[str, Any]:
    """Kernel milliseconds per run: in all, by operator type, and the costliest nodes."""
    feeds = graph_feeds(make_batch(n, c))
    with tempfile.TemporaryDirectory(prefix="focal-ort-") as directory:
        profiled = session(False, True, str(Path(directory) / "evaluation"))
        profiled.run(None, feeds)  # warm up
        for _ in range(runs):
            profiled.run(None, feeds)
        events = json.loads(Path(profiled.end_profiling()).read_text())
    by_node: collections.Counter[str] = collections.Counter()
    by_type: collections.Counter[str] = collections.Counter()
    for event in events[1:]:  # the first is the model load and the warm-up is excluded below
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            operator = event["args"].get("op_name", "?")
            by_node[f"{event['name'].removesuffix('_kernel_time')} ({operator})"] += event["dur"]
            by_type[operator] += event["dur"]
    # the warm-up run is one of runs + 1: scale to one run
    scale = 1e-3 / (runs + 1)
    return {
        "kernel_ms_per_run": sum(by_type.values()) * scale,
        "by_type_ms": [(name, us * scale) for name, us in by_type.most_common(top)],
        "by_node_ms": [(name, us * scale) for name, us in by_node.most_common(top)],
    }


def options_comparison(n: int, c: int, rounds: int) -> dict[str, Any]:
    """Medians of the graph under each option set, and their paired ratios to the service's."""
    feeds = graph_feeds(make_batch(n, c))
    variants = {
        "service (arena off, spinning on)": session(False, True),
        "arena on": session(True, True),
        "spinning off": session(False, False),
        "arena on, spinning off": session(True, False),
    }
    timed = interleave({name: _runner(s, feeds) for name, s in variants.items()}, rounds)
    reference = next(iter(variants))
    return {
        name: {
            "median_s": timed.median(name),
            "ratio_to_service": timed.ratio(name, reference).median,
        }
        for name in variants
    }


def _runner(variant: Any, feeds: dict[str, Any]) -> Candidate:
    def call() -> object:
        return variant.run(None, feeds)

    return call


def run(quick: bool) -> dict[str, Any]:
    """Print and return the node profiles and the options comparison."""
    results: dict[str, Any] = {}
    for n, c in ((100_000, 100), (100_000, 10)):
        case = case_name(n, c)
        profile = node_profile(n, c, runs=2 if quick else 5)
        print(f"\n-- graph nodes, {case}: {profile['kernel_ms_per_run']:.3g} ms of kernels a run")
        for title, key in (("by operator type", "by_type_ms"), ("costliest nodes", "by_node_ms")):
            print(f"   {title}:")
            for name, ms in profile[key]:
                share = 100 * ms / profile["kernel_ms_per_run"]
                print(f"   {share:5.1f}%  {ms:8.3g} ms  {name}")
        options = options_comparison(n, c, 3 if quick else 11)
        print(f"   session options, {case} (paired ratio to the service's options):")
        for name, entry in options.items():
            print(
                f"   {entry['ratio_to_service']:6.3g}x  {1e3 * entry['median_s']:8.3g} ms  {name}"
            )
        results[case] = {"nodes": profile, "options": options}
    return results
