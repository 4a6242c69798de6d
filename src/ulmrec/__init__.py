"""ULMRec: User-centric Large Language Model for Sequential Recommendation, end to end."""

import os as _os

#: OpenMP's default wait policy spins idle threads; with 2 torch threads on 2 cores and any other busy process,
#: a ranker training sample took 14.6 s instead of 1.0 s (benchmarks/results/threads.md). PASSIVE threads sleep
#: instead: no stall beside a busy job, and 2 threads stay faster than 1 on a quiet box (x1.17 scoring). Set here,
#: before anything loads torch's OpenMP runtime; a value the user exported (e.g. ACTIVE on a machine they own,
#: x1.96 scoring with 2 quiet threads) is kept.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
