"""The report of ``benchmarks/binarized_mnist.py``: per-run records → 3-seed means, paired
differences, the goals (met / missed / pending) and the markdown table beside the published rows.

Everything here is a pure function of the per-run records (the JSON files in
``benchmarks/results/binarized_mnist/``) and their per-image log-likelihoods, so the table can be
rebuilt without any run directory.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable

import torch

from benchmark_runs import duration, fmt
from implicit_vae.evaluation.compare import paired_difference

PRIMARY = "log_px_ais"  # the one estimate every model has: goals and pairings use it
HEADLINE_SEEDS = 3  # setting (a)'s goals are about 3-seed means
ANCHORS_FILE = "../shared/reference/static-mnist-anchors.md"

SETTINGS = {
    "a": {
        "prefix": "z10",
        "title": "(a) UIVI paper's setting: z = 10, 200-200 ReLU MLPs, batch 100",
        "models": {"vae": "binarized_mnist_z10_vae.yaml", "sivi": "binarized_mnist_z10_sivi.yaml",
                   "uivi": "binarized_mnist_z10_uivi.yaml", "avb": "binarized_mnist_z10_avb.yaml",
                   "avb_ac": "binarized_mnist_z10_avb_ac.yaml",
                   "iwae": "binarized_mnist_z10_iwae.yaml",
                   "sivi_iw": "binarized_mnist_z10_sivi_iw.yaml"},
        "seeds": (0, 1, 2),
        "paper_steps": 400_000,
    },
    "b": {
        "prefix": "z40",
        "title": "(b) pythae's setting: z = 40, one 400-unit ReLU layer, Adam 1e-4, batch 100, "
                 "500 epochs",
        "models": {"vae": "binarized_mnist_z40_vae.yaml",
                   "avb_ac": "binarized_mnist_z40_avb_ac.yaml"},
        "seeds": (0,),
        "paper_steps": 250_000,
    },
    "c": {
        "prefix": "conv32",
        "title": "(c) AVB's conv networks, z = 32, batch 100",
        "models": {"vae": "binarized_mnist_conv_vae.yaml",
                   "avb_ac": "binarized_mnist_conv_avb_ac.yaml"},
        "seeds": (0,),
        "paper_steps": None,
    },
}  # fmt: skip
IMPLICIT = ("sivi", "uivi", "avb", "avb_ac", "sivi_iw")
# Pairs that share an objective, so that their difference is the posterior's alone: (a) an
# importance-weighted semi-implicit model against the importance-weighted Gaussian one.
CONTROLS = {"a": (("sivi_iw", "iwae"),)}

# Rows of the anchors file each of our rows sets out to reproduce (test log p(x), nats).
ANCHORS = {
    ("a", "vae"): {"row": 21, "log_px": -98.29, "tag": "VERIFIED (2nd-hand)",
                   "source": "Titsias & Ruiz 2019 (UIVI), Gaussian encoder; IS 1000",
                   "steps": 400_000},
    ("a", "sivi"): {"row": 20, "log_px": -97.77, "tag": "VERIFIED (2nd-hand)",
                    "source": "Titsias & Ruiz 2019, SIVI baseline (K = 100)", "steps": 400_000},
    ("a", "uivi"): {"row": 19, "log_px": -94.09, "tag": "VERIFIED (2nd-hand)",
                    "source": "Titsias & Ruiz 2019, UIVI; S = 1000, T = 10^4 mixture",
                    "steps": 400_000},
    ("b", "vae"): {"row": 5, "log_px": -89.78, "tag": "VERIFIED",
                   "source": "pythae reproducibility README, Gaussian VAE; IS 200",
                   "steps": 250_000},
    ("c", "vae"): {"row": 14, "log_px": -82.14, "tag": "MEMORY",
                   "source": "nearest only: Sylvester paper's Gaussian baseline, gated conv, z = 64",
                   "steps": None},
}  # fmt: skip
NO_ANCHOR = "no static-MNIST number published (AVB's are on dynamic binarisation)"



# The columns of each setting's table (the separator row is built from them, so they agree).
COLUMNS = ("model", "published (row, source, tag)", "their steps", "AIS ± s.e. over seeds",
           "seeds", "IS", "IW semi-implicit", "train − test", "our steps", "train", "eval",
           "AIS steps check")  # fmt: skip


def _leapfrog(evaluation: dict) -> str:
    """`` (L leapfrog steps each)``, or nothing for records that predate the setting."""
    n = evaluation.get("ais_leapfrog_steps")
    return "" if n is None else f" ({n} leapfrog step{'s' if n != 1 else ''} each)"

def run_name(setting: str, model: str, seed: int) -> str:
    return f"{SETTINGS[setting]['prefix']}_{model}_seed{seed}"


def mean_stderr(values: list[float]) -> dict:
    """Mean over seeds and its standard error std / sqrt(n) (n - 1 in the std; None for one seed)."""
    n = len(values)
    if n == 0:
        return {"mean": None, "stderr": None, "seeds": 0}
    se = statistics.stdev(values) / math.sqrt(n) if n > 1 else None
    return {"mean": statistics.fmean(values), "stderr": se, "seeds": n}


def summarise_model(records: dict[int, dict]) -> dict:
    """Seed → per-run record of one model → its 3-seed (or n-seed) summary."""
    seeds = sorted(records)
    out = {"seeds": seeds, "runs": [records[s]["run"] for s in seeds]}
    for key in ("log_px_ais", "log_px_is", "log_px_iw_semi_implicit", "train_log_px_ais",
                "overfitting_gap"):  # fmt: skip
        values = [records[s][key] for s in seeds if records[s].get(key) is not None]
        if values:
            out[key] = mean_stderr(values)
    out["steps"] = max(records[s]["steps"] for s in seeds)
    out["train_wall_time_s"] = statistics.fmean(records[s]["train_wall_time_s"] for s in seeds)
    out["eval_wall_time_s"] = statistics.fmean(records[s]["eval_wall_time_s"] for s in seeds)
    checks = [records[s].get("ais_steps_check") for s in seeds]
    checks = [c for c in checks if c]
    if checks:
        out["ais_steps_check_max_change"] = max(abs(c["change"]) for c in checks)
        out["ais_steps_check_passed"] = all(c["passed"] for c in checks)
    return out


def paired_over_seeds(
    a: dict[int, dict], b: dict[int, dict], per_image: Callable[[str], torch.Tensor | None]
) -> dict | None:
    """Model a − model b in per-image ``PRIMARY``, paired image by image within each common seed;
    the mean over seeds with its s.e. over seeds (None for one seed). None without a common seed
    whose per-image values are both at hand."""
    per_seed = {}
    for seed in sorted(set(a) & set(b)):
        xa, xb = per_image(a[seed]["run"]), per_image(b[seed]["run"])
        if xa is not None and xb is not None:
            per_seed[seed] = paired_difference(xa, xb)
    if not per_seed:
        return None
    summary = mean_stderr([p["difference"] for p in per_seed.values()])
    return {"difference": summary["mean"], "stderr_over_seeds": summary["stderr"],
            "seeds": sorted(per_seed), "per_seed": per_seed}  # fmt: skip


def _status(ok: bool | None) -> str:
    return "pending" if ok is None else "met" if ok else "missed"


def goals(summary: dict, paired: dict, peer: dict | None) -> list[dict]:
    """The benchmark's goals, each with its value and ``met`` / ``missed`` / ``pending``
    (pending: the runs it needs are not all there yet)."""
    out = []
    a = summary.get("a", {})
    full = {m: s for m, s in a.items() if s["log_px_ais"]["seeds"] >= HEADLINE_SEEDS}

    vae = full.get("vae")
    v = a.get("vae", {}).get("log_px_ais", {}).get("mean")
    out.append(
        {
            "setting": "a",
            "goal": f"VAE >= {ANCHORS['a', 'vae']['log_px']} ({HEADLINE_SEEDS}-seed mean)",
            "value": v,
            "status": _status(None if vae is None else v >= ANCHORS["a", "vae"]["log_px"]),
        }
    )

    complete = [m for m in IMPLICIT if m in full]
    best = max(complete, key=lambda m: full[m]["log_px_ais"]["mean"], default=None)
    target = ANCHORS["a", "uivi"]["log_px"]
    hit = [m for m in complete if full[m]["log_px_ais"]["mean"] >= target
           and full[m]["steps"] <= 100_000]  # fmt: skip
    ok = True if hit else (False if len(complete) == len(IMPLICIT) else None)
    out.append(
        {
            "setting": "a",
            "goal": f"best implicit >= {target} at <= 100k steps ({HEADLINE_SEEDS}-seed mean)",
            "model": best,
            "value": None if best is None else full[best]["log_px_ais"]["mean"],
            "status": _status(ok),
        }
    )

    pair = paired.get("a_best_implicit_minus_vae")
    ok = None
    if pair is not None and len(pair["seeds"]) >= HEADLINE_SEEDS:
        ok = pair["difference"] >= 1.0
    out.append(
        {
            "setting": "a",
            "goal": f"best implicit - VAE >= +1 nat, paired per test image, {HEADLINE_SEEDS} seeds",
            "value": None if pair is None else pair["difference"],
            "status": _status(ok),
        }
    )

    b = summary.get("b", {})
    v = b.get("vae", {}).get("log_px_ais", {}).get("mean")
    out.append(
        {
            "setting": "b",
            "goal": f"VAE >= {ANCHORS['b', 'vae']['log_px']}",
            "value": v,
            "status": _status(None if v is None else v >= ANCHORS["b", "vae"]["log_px"]),
        }
    )
    ours = b.get("vae", {}).get("log_px_is", {}).get("mean")
    theirs = None if not peer or "skipped" in peer else peer.get("log_px_is")
    ok = None if ours is None or theirs is None else ours >= theirs
    out.append(
        {
            "setting": "b",
            "goal": "VAE >= pythae's VAE trained here (both IS 5000, ours)",
            "value": None if ok is None else ours - theirs,
            "status": _status(ok),
            **({"note": peer["skipped"]} if peer and "skipped" in peer else {}),
        }
    )
    pair = paired.get("b_avb_ac_minus_vae")
    out.append(
        {
            "setting": "b",
            "goal": "AVB-AC >= VAE + 0.5, paired",
            "value": None if pair is None else pair["difference"],
            "status": _status(None if pair is None else pair["difference"] >= 0.5),
        }
    )
    return out


def build(
    records: dict[str, dict],
    per_image: Callable[[str], torch.Tensor | None],
    peer: dict | None = None,
) -> dict:
    """Per-run records (name → record with setting, model, seed) → summaries, pairings, goals."""
    by: dict[str, dict[str, dict[int, dict]]] = {}
    for r in records.values():
        by.setdefault(r["setting"], {}).setdefault(r["model"], {})[r["seed"]] = r
    summary = {s: {m: summarise_model(by[s][m]) for m in SETTINGS[s]["models"] if m in by[s]}
               for s in SETTINGS if s in by}  # fmt: skip
    paired = {}
    a = summary.get("a", {})
    implicit = [m for m in IMPLICIT if m in a]
    if "vae" in a and implicit:
        best = max(implicit, key=lambda m: a[m]["log_px_ais"]["mean"])
        pair = paired_over_seeds(by["a"][best], by["a"]["vae"], per_image)
        if pair is not None:
            paired["a_best_implicit_minus_vae"] = {"models": [best, "vae"], **pair}
    wanted = [(s, "avb_ac", "vae") for s in ("b", "c")]
    wanted += [(s, m, base) for s, pairs in CONTROLS.items() for m, base in pairs]
    for s, m, base in wanted:
        if {m, base} <= set(summary.get(s, {})):
            pair = paired_over_seeds(by[s][m], by[s][base], per_image)
            if pair is not None:
                paired[f"{s}_{m}_minus_{base}"] = {"models": [m, base], **pair}
    return {
        "settings": summary,
        "paired": paired,
        "goals": goals(summary, paired, peer),
        "peer": peer,
    }


def _pm(entry: dict | None, digits: int = 2) -> str:
    if not entry or entry.get("mean") is None:
        return "—"
    se = entry.get("stderr")
    return f"{entry['mean']:.{digits}f}" + (f" ± {se:.{digits}f}" if se is not None else "")


def markdown(report: dict, command: str, evaluation: dict, last: str | None = None) -> str:
    """The README table: per setting, our rows beside the published ones; then pairings, goals.

    ``command`` rebuilds every row; ``last``, when it differs, is the invocation that wrote the
    table (which may have run only some of the rows)."""
    e = evaluation
    lines = [
        "Statically binarised MNIST (Larochelle & Murray: 50k train / 10k valid / 10k test); "
        f"test log p(x) in nats on {e['test_examples']:,} test images, from best.ckpt; AIS "
        f"{e['ais_chains']} chains × {e['ais_steps']} steps"
        f"{_leapfrog(e)}, IS {e['is_samples']:,} samples, "
        f"IW semi-implicit {e['iw_samples']:,} × {e['iw_mixing_samples']} mixing draws. "
        f"Every row: `{command}`"
        + (f" (this table was written by `{last}`)." if last and last != command else "."),
        "",
    ]
    for s, models in report["settings"].items():
        spec = SETTINGS[s]
        lines += [
            f"**{spec['title']}**",
            "",
            "| " + " | ".join(COLUMNS) + " |",
            "|" + "---|" * len(COLUMNS),
        ]
        for m, r in models.items():
            anchor = ANCHORS.get((s, m))
            pub = (
                f"{anchor['log_px']} (row {anchor['row']}: {anchor['source']}; {anchor['tag']})"
                if anchor
                else NO_ANCHOR
            )
            their = f"{anchor['steps']:,}" if anchor and anchor["steps"] else "—"
            check = (
                "—"
                if "ais_steps_check_max_change" not in r
                else f"{'ok' if r['ais_steps_check_passed'] else 'FAILED'} "
                f"(|Δ| ≤ {r['ais_steps_check_max_change']:.3f})"
            )
            lines.append(
                f"| {m} | {pub} | {their} | {_pm(r.get('log_px_ais'))} | {len(r['seeds'])} "
                f"| {_pm(r.get('log_px_is'))} | {_pm(r.get('log_px_iw_semi_implicit'))} "
                f"| {_pm(r.get('overfitting_gap'))} | {r['steps']:,} "
                f"| {duration(r['train_wall_time_s'])} | {duration(r['eval_wall_time_s'])} "
                f"| {check} |")  # fmt: skip
        lines.append("")
    for key, p in report["paired"].items():
        what = " − ".join(p["models"])
        se = p["stderr_over_seeds"]
        lines.append(
            f"Paired, setting ({key[0]}), {what} in AIS per test image: {p['difference']:+.2f}"
            + (f" ± {se:.2f} (s.e. over {len(p['seeds'])} seeds)" if se is not None else
               f" ± {p['per_seed'][p['seeds'][0]]['difference_stderr_over_examples']:.2f} "
               "(s.e. over test images, 1 seed)") + ".")  # fmt: skip
    peer = report.get("peer")
    if peer:
        lines.append(
            "pythae peer (setting b): "
            + (
                f"skipped: {peer['skipped']}"
                if "skipped" in peer
                else f"pythae VAE IS-5000 {fmt(peer.get('log_px_is'))}, epoch {fmt(peer.get('epoch_s'))} s "
                f"vs ours {fmt(peer.get('our_epoch_s'))} s (interleaved)"
            )
        )
    lines += ["", "| setting | goal | value | status |", "|---|---|---|---|"]
    for g in report["goals"]:
        note = f" ({g['note']})" if g.get("note") else ""
        model = f" [{g['model']}]" if g.get("model") else ""
        lines.append(
            f"| ({g['setting']}) | {g['goal']} | {fmt(g['value'])}{model} | {g['status']}{note} |"
        )
    lines += [
        "",
        "AIS: HMC AIS from q's moments where q has them, a stochastic lower bound for "
        "every model; the goals and pairings use it. IS: samples from q (Gaussian "
        "posteriors). IW semi-implicit: SIVI's mixture with the generating noise (a "
        f"stochastic lower bound). train − test: AIS on {e['train_examples']:,} training "
        f"images minus test (overfitting). AIS steps check: {e['check_steps']} instead of "
        f"{e['ais_steps']} AIS steps on {e['check_examples']} test images move the mean by "
        f"< 0.1 nat. Published rows: {ANCHORS_FILE}.",
    ]
    return "\n".join(lines)
