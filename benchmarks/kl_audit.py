"""The KL audit on trained models: every estimator on a semi-implicit run's own posteriors.

Trains two semi-implicit (SIVI) models — the default digits model with ``model.posterior:
semi_implicit`` (3,000 steps) and the UIVI paper's binarised-MNIST SIVI setting cut to 5,000 steps —
then audits each (``implicit_vae.evaluation.audit``) on the first ``--examples`` test inputs from the
best-on-validation checkpoint: the true KL(q(·|x) ‖ p) bracketed from both sides by the mixture
with and without the generating ε, and every KL estimator measured on exactly those posteriors.
The table sets each estimator's error on these real posteriors beside its error on the synthetic
cases of the KL-accuracy benchmark (``benchmarks/results/kl_accuracy.json``, Gaussians;
``benchmarks/results/kl_semi_implicit/``, the skew-normal semi-implicit case).

    python benchmarks/kl_audit.py                      # both models (~25 min on 2 busy cores)
    python benchmarks/kl_audit.py --reuse-runs         # audit runs already in --workdir again
    python benchmarks/kl_audit.py --models digits --examples 4 --steps 20 --train-steps 50  # smoke

Writes benchmarks/results/kl_audit.json, kl_audit.md and kl_audit_<model>.png. The binarised-MNIST
model needs ``--data`` (default ../shared/data/binarized_mnist); without it that model is skipped
with the reason.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from implicit_vae.config import load_config
from implicit_vae.evaluation.audit import audit_run
from implicit_vae.training.fit import fit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_runs import write_result, write_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "src" / "implicit_vae" / "configs"
RESULTS = ROOT / "benchmarks" / "results"
# name -> (shipped config, overrides, training steps); the MNIST run validates 5 times.
MODELS = {
    "digits": ("default.yaml", ["model.posterior=semi_implicit", "divergence.name=sivi"], 3000),
    "mnist": ("binarized_mnist_z10_sivi.yaml",
              ["train.val_every=1000", "train.checkpoint_every=1000"], 5000),
}  # fmt: skip
GOALS = {"max_bracket_width": 0.05, "avb_ac_relative_error": 0.05}


def train(name: str, args: argparse.Namespace) -> tuple[Path, float | None]:
    """Train (or, with ``--reuse-runs``, reuse) one model; returns its run directory and the
    training wall time (None when reused)."""
    run_dir = args.workdir / f"{name}_si"
    if args.reuse_runs and (run_dir / "summary.json").is_file():
        return run_dir, None
    config, overrides, steps = MODELS[name]
    steps = args.train_steps or steps
    overrides = [
        *overrides,
        f"train.max_steps={steps}",
        f"train.seed={args.seed}",
        f"train.threads={args.threads}",
        "train.progress_bar=false",
        f"train.run_dir={run_dir}",
    ]
    if name == "mnist":
        overrides.append(f"data.path={args.data}")
    start = time.perf_counter()
    run_dir, _ = fit(load_config(CONFIGS / config, overrides))
    return Path(run_dir), time.perf_counter() - start


def _synthetic(path: Path, kind: str) -> dict[str, dict]:
    """Per estimator, the signed relative errors of the ``kind`` cells of a KL-accuracy JSON."""
    try:
        cells = json.loads(path.read_text())["cells"]
    except (OSError, ValueError, KeyError):
        return {}
    out: dict[str, dict] = {}
    for c in cells:
        ok = c["status"] == "ok" and c["relative_error"] is not None
        if c["case"] == kind and ok and c["divergence"] == "kl":
            out.setdefault(c["estimator"], {})[c["dim"], c["target_kl"]] = c["relative_error"]
    return out


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:+.1%}"


def summarise(audits: dict[str, dict]) -> dict:
    """The table rows: estimator × (synthetic Gaussians, synthetic semi-implicit, each audit)."""
    gauss = _synthetic(RESULTS / "kl_accuracy.json", "gaussian")
    semi = _synthetic(RESULTS / "kl_semi_implicit" / "kl_accuracy.json", "semi_implicit")
    keys = []
    for audit in audits.values():
        keys += [k for k in audit["estimators"] if k not in keys]
    rows = []
    for key in keys:
        base = key.partition("[")[0]
        g = gauss.get(base, {}) if not key.startswith("run:") else {}
        s = semi.get(base, {}) if not key.startswith("run:") else {}
        row = {
            "estimator": key,
            "synthetic_gaussian_median_abs": statistics.median(map(abs, g.values())) if g else None,
            "synthetic_gaussian_worst": max(g.values(), key=abs) if g else None,
            "synthetic_semi_implicit": {f"d={d}": e for (d, _), e in sorted(s.items())},
        }
        for name, audit in audits.items():
            c = audit["estimators"].get(key)
            row[name] = None if c is None else {
                "estimate": c.get("estimate"), "relative_error": c.get("relative_error"),
                "inside_bracket": c.get("inside_bracket"), "wall_time_s": c["wall_time_s"],
                "status": c["status"],
            }  # fmt: skip
        rows.append(row)
    return {"rows": rows}


def goals(audits: dict[str, dict]) -> dict:
    """Each audit against the goals: the bracket ≤ 0.05 nat wide for every input; ``avb_ac``
    (each contrast) within 5 % of the bracket's midpoint."""
    out = {}
    for name, audit in audits.items():
        truth = audit["truth"]
        avb_ac = {k: c.get("relative_error") for k, c in audit["estimators"].items()
                  if k.startswith("avb_ac[")}  # fmt: skip
        out[name] = {
            "max_bracket_width": truth.get("max_width"),
            "bracket_met": truth.get("max_width") is not None
            and truth["max_width"] <= GOALS["max_bracket_width"],
            "avb_ac_relative_error": avb_ac,
            "avb_ac_met": bool(avb_ac) and all(
                e is not None and abs(e) <= GOALS["avb_ac_relative_error"] for e in avb_ac.values()
            ),
        }
    return out


def markdown(report: dict) -> str:
    names = list(report["audits"])
    semi_dims = sorted({d for r in report["table"]["rows"] for d in r["synthetic_semi_implicit"]})
    head = ["estimator", "Gaussians: median abs (worst)",
            *(f"semi-implicit synthetic {d}" for d in semi_dims),
            *(f"{n} SI run" for n in names)]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in report["table"]["rows"]:
        g = r["synthetic_gaussian_median_abs"]
        cells = [
            f"`{r['estimator']}`",
            "–" if g is None else f"{g:.1%} ({_pct(r['synthetic_gaussian_worst'])})",
            *(_pct(r["synthetic_semi_implicit"].get(d)) for d in semi_dims),
        ]
        for n in names:
            c = r[n]
            if c is None:
                cells.append("–")
            elif c["status"] != "ok":
                cells.append(c["status"].split(":")[0])
            else:
                inside = c["inside_bracket"]
                cells.append(_pct(c["relative_error"])
                             + ("" if inside is None else f" ({inside:.0%} in)"))  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    truths = []
    for n, a in report["audits"].items():
        t = a["truth"]
        truths.append(
            f"- **{n}** ({a['examples']} test inputs, K = {a['settings']['mixing']}): true KL in "
            f"[{t['lower']:.3f}, {t['upper']:.3f}] nats per input on average, bracket width "
            f"{t['width']:.4f} (largest {t['max_width']:.4f}); goal ≤ {GOALS['max_bracket_width']}: "
            f"{'met' if report['goals'][n]['bracket_met'] else 'missed'}; avb_ac within 5 %: "
            f"{'met' if report['goals'][n]['avb_ac_met'] else 'missed'}"
        )
    return "\n".join([*truths, "", *lines, "", f"Command: `{report['command']}`", ""])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="digits,mnist", help="comma-separated: digits, mnist")
    p.add_argument("--workdir", type=Path, default=Path("runs/kl_audit"))
    p.add_argument("--reuse-runs", action="store_true", help="audit finished runs in --workdir")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/binarized_mnist")
    p.add_argument("--train-steps", type=int, default=None, help="override each model's steps")
    p.add_argument("--examples", type=int, default=32)
    # K = 1000 left the widest MNIST bracket at 0.051 nat; 2000 halves every width.
    p.add_argument("--mixing", type=int, default=2000, help="K of the bracket")
    p.add_argument("--truth-samples", type=int, default=512)
    p.add_argument("--steps", type=int, default=200, help="critic updates per input")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown:
        p.error(f"--models: unknown {unknown}; expected some of {', '.join(MODELS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    audits, skipped, train_times = {}, {}, {}
    for name in args.models:
        if name == "mnist" and not args.data.is_dir():
            skipped[name] = f"no binarised MNIST at {args.data} (pass --data)"
            print(f"{name}: skipped: {skipped[name]}", flush=True)
            continue
        run_dir, train_times[name] = train(name, args)
        print(f"{name}: auditing {run_dir}", flush=True)
        audit = audit_run(
            run_dir, examples=args.examples, checkpoint="best",
            json_path=run_dir / "audit.json", plot_path=args.out / f"kl_audit_{name}.png",
            mixing=args.mixing, truth_samples=args.truth_samples, steps=args.steps,
            seed=args.seed, progress=True,
        )  # fmt: skip
        audit.pop("run_dir")
        audits[name] = audit
    argv = sys.argv[1:] if argv is None else argv
    report = {
        "benchmark": "kl_audit",
        "command": "python benchmarks/kl_audit.py" + "".join(f" {shlex.quote(a)}" for a in argv),
        "torch": torch.__version__,
        "threads": args.threads,
        "train_wall_time_s": train_times,
        "skipped": skipped,
        "goals_set": GOALS,
        "goals": goals(audits),
        "audits": audits,
        "table": summarise(audits),
    }
    write_result(args.out / "kl_audit.json", report)
    if audits:
        write_table(args.out / "kl_audit.md", markdown(report))
        print(markdown(report))
    print(f"wrote {args.out / 'kl_audit.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
