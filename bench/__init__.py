"""Side-by-side benchmarks: the service against what users would use instead.

Every number is a median, and every comparison a ratio of two candidates measured side by
side in the same rounds of one run (see :mod:`bench.timing`), because the machines this runs
on are shared and noisy: absolute times move 2-3x between runs, ratios much less. Nothing
here is a timed pass / fail test; targets are printed as met or not met.

Run ``python -m bench --help``.
"""
