"""How accurate is each divergence estimator against known answers?

q = N(μ, s²I) against p = N(0, I) for d ∈ {2, 8, 32, 128} and KL(q ‖ p) ∈ {1, 10, 50} nats, plus a
mixture q (Monte Carlo truth) and a pair given only as samplers; every estimator of
``implicit_vae.divergences.ESTIMATORS`` on every case (see ``implicit_vae.benchmarks``).

    python benchmarks/kl_accuracy.py                     # the full grid (~18 min, 1 busy core)
    python benchmarks/kl_accuracy.py --quick             # ~70 s: d ∈ {2, 8}, KL ∈ {1, 10}
    python benchmarks/kl_accuracy.py --estimators avb_ac,knn --dims 2,128 --kls 1,50

Writes benchmarks/results/kl_accuracy.json (rewritten after every case) and kl_accuracy.png, and
prints the table as it goes, then a markdown summary of the relative errors.
"""

from __future__ import annotations

import sys
from pathlib import Path

from implicit_vae.cli.benchmark import main

if __name__ == "__main__":
    sys.exit(main(prog="kl_accuracy.py", results=Path(__file__).resolve().parent / "results"))
