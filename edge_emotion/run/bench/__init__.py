"""`edge-emotion bench`: latency and throughput of backends and precisions side by side, and where a clip's time goes.

One idea per module: timing (percentiles over synchronised calls), targets (which backend runs which artifact),
agreement (top-1 against the FP32 reference), stages (per-stage time of real clips), machine (what ran it), plots,
report (the records) and run (run_bench, tying them together). This file imports none of them, so that
`edge_emotion.run.bench.timing` stays as light as numpy and the backend base (benchmarks reuse it).
"""
