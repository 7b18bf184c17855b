"""Scale-out on Ray Data: `score --executor ray` and `prepare --executor ray` over a local instance or a cluster.

Light on import (no ray here): `ray` is imported when a session starts, with an
install hint when the [ray] extra is missing.

- cluster.py: RayOptions; join a cluster or start a local instance, and stop it again
- reaper.py: the watchdog that leaves no process of a local instance behind, even after SIGKILL
- scoring.py: the scoring pipeline (preprocessing actors -> backend actors -> the driver's results file)
- pool_stage.py: the preprocessing actors' stage, a worker job per file (scoring's ReadJob, or the training
  cache's CacheJob for `prepare --executor ray`, toolchain/ray_prepare.py)
"""
