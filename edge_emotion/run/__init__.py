"""Scoring runs: per-clip inputs in a worker pool, batched backend calls, consensus, result rows, bench, preview."""
