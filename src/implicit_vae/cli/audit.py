"""``implicit-vae audit``: every KL estimator on a run's own posteriors, against the truth they allow
(a semi-implicit bracket, a closed form, or none; see :mod:`implicit_vae.evaluation.audit`)."""

from __future__ import annotations

import argparse

from ..cpu import flush_denormals
from .common import at_least_two, positive


def _non_negative(text: str) -> int:
    return 0 if text.strip() == "0" else positive(text)


def add_parser(sub) -> None:
    """The ``audit`` sub-command and its options."""
    p = sub.add_parser(
        "audit", help="KL estimators on a run's posteriors against the true KL (bracketed)"
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--examples", type=positive, default=32, metavar="N",
                   help="inputs of the split to audit (default 32)")
    p.add_argument("--mixing", type=positive, default=1000, metavar="K",
                   help="fresh mixing draws of the semi-implicit bracket (default 1000)")
    p.add_argument("--truth-samples", type=at_least_two, default=512, metavar="N",
                   help="samples of q per input for the bracket (default 512)")
    p.add_argument("--estimators", metavar="NAMES", default=None,
                   help="comma-separated estimators (default: all; avb_ac runs each contrast, "
                        "avb_ac[full] one)")
    p.add_argument("--steps", type=_non_negative, default=200, metavar="N",
                   help="critic updates per input (default 200)")
    p.add_argument("--batch-size", type=at_least_two, default=128, metavar="N",
                   help="samples of q and p per critic update (default 128)")
    p.add_argument("--samples", type=at_least_two, default=1000, metavar="N",
                   help="samples of q (and p) per input for each estimate (default 1000)")
    p.add_argument("--critic-width", type=positive, default=128, metavar="W")
    p.add_argument("--critic-blocks", type=_non_negative, default=2, metavar="B")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--checkpoint", default="last", choices=["last", "best"])
    p.add_argument("--json", metavar="FILE", help="where to write (default: RUN_DIR/audit.json)")
    p.add_argument("--no-plot", action="store_true", help="skip RUN_DIR/plots/audit.png")


def _num(v, fmt="{:9.3f}") -> str:
    return f"{'-':>9}" if v is None else fmt.format(v)


def run(args: argparse.Namespace) -> None:
    flush_denormals()
    from ..evaluation.audit import audit_run

    names = None
    if args.estimators:
        names = [n.strip() for n in args.estimators.split(",") if n.strip()]
    result = audit_run(
        args.run_dir,
        examples=args.examples,
        split=args.split,
        checkpoint=args.checkpoint,
        json_path=args.json,
        plot=not args.no_plot,
        mixing=args.mixing,
        truth_samples=args.truth_samples,
        estimators=names,
        steps=args.steps,
        batch_size=args.batch_size,
        samples=args.samples,
        critic={"width": args.critic_width, "blocks": args.critic_blocks},
        progress=True,
    )
    truth = result["truth"]
    print(f"{result['examples']} inputs of {result['split']}; {result['posterior']} against "
          f"{result['prior']}")  # fmt: skip
    if truth["kind"] == "unavailable":
        print(f"truth: not available: {truth['reason']}")
        check = result.get("ais_check")
        print(check["statement"] if isinstance(check, dict) else check)
    else:
        print(f"truth ({truth['kind']}): lower {truth['lower']:.3f} ± {truth['lower_se']:.3f}, "
              f"upper {truth['upper']:.3f} ± {truth['upper_se']:.3f}, width {truth['width']:.3f}")
        for row in truth.get("by_mixing", []):
            print(f"  K = {row['mixing']:>6d}: [{row['lower']:9.3f}, {row['upper']:9.3f}] "
                  f"width {row['width']:.3f}")
    print(f"{'estimator':>18s} {'estimate':>9s} {'lower':>9s} {'upper':>9s} {'rel.err':>9s} "
          f"{'inside':>7s} {'time':>8s}")
    for key, c in result["estimators"].items():
        lo, hi = c.get("bracket") or (None, None)
        inside = c.get("inside_bracket")
        status = "" if c["status"] == "ok" else f"  [{c['status'][:60]}]"
        print(f"{key:>18s} {_num(c['estimate'])} {_num(lo)} {_num(hi)} "
              f"{_num(c['relative_error'], '{:+9.1%}')} "
              f"{'-' if inside is None else f'{inside:.0%}':>7s} {c['wall_time_s']:7.1f}s{status}")
    for key, why in result["skipped"].items():
        print(f"{key:>18s}  skipped: {why}")
    print(f"wrote {args.json or result['run_dir'] + '/audit.json'}"
          + (f" and {result['plot']}" if "plot" in result else ""))
