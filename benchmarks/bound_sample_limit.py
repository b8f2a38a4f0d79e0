"""How many samples do the NWJ and DV bounds need, even with the perfect critic?

``kl_nwj`` and ``kl_dv`` estimate KL(q ‖ p) through a variational bound whose second term is an
average over prior samples of e^{T}: NWJ(T) = E_q[T] − e^{−1} E_p[e^{T}] and DV(T) = E_q[T] −
log E_p[e^{T}]. At the optimum T* (1 + log q/p for NWJ, log q/p for DV) that term is an average of the
density ratio r = q/p over m samples of p, whose relative variance E_p[r²] − 1 grows like e^{KL} or
faster; the sample mean is dominated by rare prior samples in q's region, so with m ≪ e^{KL} it is
usually far too small (DV then over-estimates, NWJ under- or over-estimates wildly). No critic and no
training can fix this: here the critic is the exact log-ratio, on the KL benchmark's Gaussian pairs
(``implicit_vae.benchmarks.cases.gaussian_case``), for m = n = 10³ … 10⁶ samples and 20 seeds.
Any high-confidence distribution-free lower bound on a KL needs a sample size exponential in it
(McAllester & Stratos 2020; Song & Ermon 2020).

    python benchmarks/bound_sample_limit.py          # ~1 min on one core
    python benchmarks/bound_sample_limit.py --quick  # smoke run

Writes ``benchmarks/results/bound_sample_limit.json``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch

from implicit_vae.benchmarks.cases import gaussian_case
from implicit_vae.training.runs import write_json

RESULTS = Path(__file__).resolve().parent / "results"


def exact_critic_estimates(case, n: int, seed: int, chunk: int = 250_000) -> tuple[float, float]:
    """(NWJ, DV) estimates of KL(q ‖ p) with the exact log-ratio as critic, n samples per side."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        e_q_log_r, log_sum_r = 0.0, -math.inf
        for start in range(0, n, chunk):
            k = min(chunk, n - start)
            zq, zp = case.sample_q(k).double(), case.sample_p(k).double()
            e_q_log_r += (case.log_q(zq) - case.log_p(zq)).sum().item()
            log_sum_r = torch.logaddexp(
                torch.tensor(log_sum_r, dtype=torch.float64),
                torch.logsumexp(case.log_q(zp) - case.log_p(zp), 0),
            ).item()
    finally:
        torch.random.set_rng_state(gen_state)
    e_q_log_r /= n
    log_mean_r = log_sum_r - math.log(n)  # log of (1/m) Σ r(z_p)
    nwj = e_q_log_r + 1.0 - math.exp(log_mean_r)  # T = 1 + log r
    dv = e_q_log_r - log_mean_r  # T = log r
    return nwj, dv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two sizes, three seeds")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000, 1_000_000]
    seeds = range(3 if args.quick else 20)
    start = time.perf_counter()
    cells = []
    for dim in (2, 8):
        for kl in (1, 10, 50):
            case = gaussian_case(dim, kl)
            for n in sizes:
                runs = [exact_critic_estimates(case, n, seed) for seed in seeds]
                row = {"dim": dim, "kl": kl, "samples_per_side": n, "seeds": len(runs)}
                for j, name in enumerate(("nwj", "dv")):
                    rel = [r[j] / kl - 1.0 for r in runs]
                    row[name] = {
                        "mean_relative_error": statistics.fmean(rel),
                        "median_relative_error": statistics.median(rel),
                        "spread_relative_error": statistics.stdev(rel),
                        "within_5_percent": sum(abs(e) <= 0.05 for e in rel) / len(rel),
                    }
                cells.append(row)
                nwj, dv = row["nwj"], row["dv"]
                print(
                    f"d={dim} KL={kl:>2} n={n:>9,}: "
                    f"NWJ median {100 * nwj['median_relative_error']:+9.1f} % "
                    f"(within 5 %: {100 * nwj['within_5_percent']:3.0f} % of seeds), "
                    f"DV median {100 * dv['median_relative_error']:+9.1f} % "
                    f"(within 5 %: {100 * dv['within_5_percent']:3.0f} %)",
                    flush=True,
                )
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(
        args.out / "bound_sample_limit.json",
        {
            "benchmark": "bound_sample_limit",
            "critic": "exact log q/p (NWJ: T = 1 + log r, DV: T = log r)",
            "cases": "implicit_vae.benchmarks.cases.gaussian_case(dim, kl)",
            "quick": args.quick,
            "wall_time_s": round(time.perf_counter() - start, 1),
            "cells": cells,
        },
    )
    print(f"wrote {args.out / 'bound_sample_limit.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
