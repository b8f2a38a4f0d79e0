"""``implicit-vae benchmark kl``: argument parsing and the run, shared with benchmarks/kl_accuracy.py."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..benchmarks.kl import CASE_KINDS, kl_accuracy
from ..benchmarks.report import markdown_table
from ..cpu import flush_denormals

RESULTS = Path("benchmarks") / "results"  # the repository's tracked results (benchmarks/kl_accuracy.py)
RUNS = Path("runs") / "benchmark_kl"  # the CLI's default: a fresh run directory, -2, -3… if taken


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def main(
    argv: list[str] | None = None,
    prog: str = "implicit-vae benchmark kl",
    results: Path | None = None,
) -> int:
    """Run the KL-accuracy benchmark from command-line arguments; returns the exit code.

    Results go to ``--out``, else to ``results``, else (the ``implicit-vae benchmark kl`` default) to
    a fresh run directory ``runs/benchmark_kl`` (``-2``, ``-3``… when taken), claimed atomically and
    locked while the benchmark runs, so that nothing tracked or earlier is overwritten.
    """
    from .common import OneLineArgumentParser

    parser = OneLineArgumentParser(
        prog=prog, description="How accurate is each divergence estimator against known answers?"
    )
    parser.add_argument("--quick", action="store_true", help="small grid, few steps (< 2 min)")
    parser.add_argument(
        "--estimators",
        type=lambda s: [v for v in s.split(",") if v],
        help="comma-separated names (default: all)",
    )
    parser.add_argument("--dims", type=_ints, default=[2, 8, 32, 128])
    parser.add_argument("--kls", type=_floats, default=[1, 10, 50])
    parser.add_argument("--steps", type=int, help="critic steps per cell (default: by d)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-extra", action="store_true", help="skip the mixture and sampler-only cases"
    )
    parser.add_argument(
        "--cases",
        type=lambda s: [v for v in s.split(",") if v],
        help=f"comma-separated case kinds (default: all of {', '.join(CASE_KINDS)})",
    )
    parser.add_argument("--critic-width", type=int, default=128)
    parser.add_argument("--critic-blocks", type=int, default=2)
    parser.add_argument(
        "--waymarks",
        type=int,
        default=1,
        help="telescoping critics for avb, avb_ac and aae (default 1: a single classifier)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument(
        "--out",
        type=Path,
        default=results,
        help=f"output directory (default: {results or f'a new {RUNS}, -2, -3… if taken'})",
    )
    args = parser.parse_args(argv)
    if args.waymarks < 1:
        parser.error(f"--waymarks must be >= 1 (1: a single classifier), got {args.waymarks}")
    flush_denormals()
    torch.set_num_threads(args.threads)
    lock = None
    if args.out is None:
        from ..config import ConfigError
        from ..training.runs import claim_run_dir

        try:
            lock = claim_run_dir(RUNS)
        except ConfigError as err:
            parser.exit(2, f"{parser.prog}: error: {err}\n")
        args.out = lock.run_dir
    print(f"writing to {args.out}", flush=True)
    try:
        return _run(parser, args)
    finally:
        if lock is not None:
            lock.release()


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        result = kl_accuracy(
            estimators=args.estimators,
            dims=args.dims,
            kls=args.kls,
            steps=args.steps,
            batch_size=args.batch_size,
            seed=args.seed,
            quick=args.quick,
            out_dir=args.out,
            progress=True,
            extra_cases=not args.no_extra,
            cases=args.cases,
            critic={
                "width": args.critic_width,
                "blocks": args.critic_blocks,
                **({"waymarks": args.waymarks} if args.waymarks != 1 else {}),
            },
        )
    except ValueError as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    print()
    print(markdown_table(result))
    print(
        f"\nwrote {args.out / 'kl_accuracy.json'} and {args.out / 'kl_accuracy.png'} "
        f"in {result['meta']['wall_time_s']:.0f} s"
    )
    return 0
