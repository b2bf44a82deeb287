"""Where the time and memory go: ``python -m bench.profile [--only server,stages,graph]``.

Not benchmarks (no baselines, no targets): evidence for what to optimise next.

- ``server``: py-spy (GIL mode) on a real ``focal serve`` while it answers JSON, ``.npz``,
  v2 binary and small requests; top frames by self and inclusive samples.
- ``stages``: the service's own request stages (decode, validate, graph, encode) timed in
  process, and the server-side memory of each stage for a large binary request.
- ``graph``: onnxruntime's node profile of the evaluation graph, and the graph's time under
  other session options than the service's.
"""
