"""``implicit-vae compare``: the paired difference of two evaluations of the same examples."""

from __future__ import annotations

import argparse

# implicit_vae.evaluation.compare.PER_EXAMPLE_KEYS, spelled out so that the parser imports no torch
# (tests/test_cli_compare.py checks that the two agree).
ESTIMATES = ("log_px_ais", "log_px_is", "log_px_iw_semi_implicit")


def add_parser(sub) -> None:
    """The ``compare`` sub-command and its options."""
    compare = sub.add_parser(
        "compare",
        help="paired difference of two evaluations of the same examples, with its s.e.",
    )
    compare.add_argument(
        "evaluations",
        nargs=2,
        metavar="PER_EXAMPLE",
        help="two *_per_example.pt files written by implicit-vae evaluate (A, then B)",
    )
    compare.add_argument("--estimate", default="log_px_ais", choices=list(ESTIMATES))


def run(args: argparse.Namespace) -> None:
    from ..evaluation.compare import compare_evaluations

    a, b = args.evaluations
    paired = compare_evaluations(a, b, args.estimate)
    print(
        f"A - B in {args.estimate}: {paired['difference']:+.3f} ± "
        f"{paired['difference_stderr_over_examples']:.3f} nats (s.e. over "
        f"{paired['examples']} examples); A is higher on "
        f"{100 * paired['fraction_where_a_is_higher']:.0f} % of them\n  A = {a}\n  B = {b}"
    )
