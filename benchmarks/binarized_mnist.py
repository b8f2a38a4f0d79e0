"""Statically binarised MNIST, the field's likelihood benchmark: train, evaluate and compare our
models against the published rows of ``../shared/reference/static-mnist-anchors.md``.

Data: ``binarized_mnist_{train,valid,test}.amat[.gz]`` (Larochelle & Murray: 50k / 10k / 10k,
binarised once) in ``--data`` (default ``../shared/data/binarized_mnist``). Settings:

* (a) the UIVI paper's: z = 10, 200-200 ReLU, batch 100, 100k steps; vae, sivi, uivi, avb, avb_ac;
  3 seeds (rows 19-21).
* (b) pythae's: z = 40, one 400-unit layer, Adam 1e-4, batch 100, 500 epochs; vae, avb_ac (row 5),
  and pythae's own VAE on the same data and networks when pythae is installed.
* (c) AVB's conv networks, z = 32; vae, avb_ac (GPU-sized).

Each run trains in a subprocess, ``implicit-vae train --config <cfg> --set data.path=...
--set train.seed=k --set train.threads=t --set train.progress_bar=false --set
train.run_dir=<workdir>/<name>``, with names ``z10_<model>_seed<k>``, ``z40_...``, ``conv32_...``.
With ``--reuse-runs`` a finished run is evaluated without training, an unfinished one is resumed
(``implicit-vae train --resume``), and a per-run result already in ``<out>/binarized_mnist/``
whose config, checkpoint and evaluation fingerprints match is used as it is (also when the run
directory is gone, with config and evaluation matching).

Evaluation of best.ckpt on all 10,000 test images: AIS for every model (8 chains x 1000 steps,
one leapfrog step each), IS with 5,000 samples for Gaussian posteriors, the semi-implicit IW bound
for sivi/uivi, AIS on 10,000 training images (the overfitting gap), and on 100 test images a check
that 3x more AIS steps move the mean by < 0.1 nat. Per-run results go to
``<out>/binarized_mnist/<name>.json`` with the per-image test values beside it in ``<name>.pt``
(readable by ``implicit-vae compare``); the report to ``<out>/binarized_mnist.{json,md}``.

    python benchmarks/binarized_mnist.py --settings a --reuse-runs          # the headline
    python benchmarks/binarized_mnist.py --quick                            # a smoke run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

import implicit_vae
from implicit_vae.cli.evaluate import evaluation_device
from implicit_vae.config import ConfigError, load_config
from implicit_vae.cpu import flush_denormals
from implicit_vae.data import DataError, load_binarized_mnist_dir
from implicit_vae.evaluation import EvaluationError, ais_log_likelihood
from implicit_vae.evaluation.compare import data_fingerprint
from implicit_vae.evaluation.run import ais_initial, evaluate_model
from implicit_vae.training.checkpoint import CheckpointError, atomic_save
from implicit_vae.training.runs import load_run

sys.path.insert(0, str(Path(__file__).resolve().parent))
import binarized_mnist_report as report  # noqa: E402
from benchmark_runs import (  # noqa: E402
    comparable,
    critic_health,
    differing_keys,
    portable,
    read_metrics,
    write_result,
    write_table,
)

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "src" / "implicit_vae" / "configs"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "binarized_mnist"
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
DEFAULT_WORKDIR = Path("runs/binarized_mnist")
# Where or how a run trains, not what it trains: ignored when a run or a result is reused. A run's
# config.yaml records data.binarize as done (none); the configs ask for auto, the same thing here.
IGNORED = {"train": ("run_dir", "progress_bar", "threads"), "data": ("path", "binarize")}
QUICK = {"steps": 20, "eval_subset": 100, "ais_chains": 2, "ais_steps": 20, "is_samples": 50,
         "iw_samples": 20, "iw_mixing": 10, "check_examples": 10, "check_steps": 40}  # fmt: skip


class BenchmarkError(Exception):
    """A problem with the benchmark's inputs or run directories; one line, exit code 2."""


# --- data --------------------------------------------------------------------------------------


def load_data(path: Path, subset: int | None, train_examples: int) -> tuple[torch.Tensor, ...]:
    """(test, first training images) as float {0,1} tensors (N, 784), test cut to ``subset``."""
    if not path.is_dir():
        raise BenchmarkError(f"--data: {str(path)!r} does not exist; expected the directory with "
                             "binarized_mnist_{train,valid,test}.amat[.gz]")  # fmt: skip
    try:
        train, _, test = load_binarized_mnist_dir(path)
    except DataError as err:
        raise BenchmarkError(f"--data: {err}") from None
    n = subset or len(test)
    return (
        torch.from_numpy(test[:n]).float(),
        torch.from_numpy(train[: min(train_examples, subset or train_examples)]).float(),
    )


# --- one run -----------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def wanted_config(setting: str, model: str, seed: int, args) -> tuple[Path, list[str], dict]:
    """(config file, the run's overrides, its comparable config dict)."""
    path = CONFIGS / report.SETTINGS[setting]["models"][model]
    overrides = [f"train.seed={seed}", *([f"train.max_steps={args.steps}"] if args.steps else []),
                 *args.set]  # fmt: skip
    cfg = load_config(path, overrides)
    return path, overrides, comparable(cfg.to_dict(), IGNORED)


def plan(run_dir: Path, want: dict, cached: dict | None, eval_fp: str, reuse: bool) -> str:
    """What to do for one run: ``cached`` (its per-run result stands), ``evaluate`` (finished run),
    ``resume`` (unfinished run), or ``train``.

    Raises:
        BenchmarkError: for a run directory that cannot be used as asked (exists without
            ``--reuse-runs``, another config, or no checkpoint).
    """
    config_fp = fingerprint(want)
    matches = (cached is not None and cached.get("config_fingerprint") == config_fp
               and cached.get("eval_fingerprint") == eval_fp)  # fmt: skip
    if not run_dir.exists():
        return "cached" if reuse and matches else "train"
    if run_dir.is_dir() and not any(run_dir.iterdir()):
        return "train"
    if not reuse:
        raise BenchmarkError(f"{run_dir} exists; pass --reuse-runs to reuse or resume it, or "
                             "delete it")  # fmt: skip
    finished = (run_dir / "summary.json").is_file()
    if not finished and not (run_dir / "checkpoints" / "last.ckpt").is_file():
        raise BenchmarkError(f"{run_dir} holds no checkpoint to resume; delete it to train again")
    have = comparable(load_config(run_dir / "config.yaml").to_dict(), IGNORED)
    if have != want:
        raise BenchmarkError(
            f"--reuse-runs: {run_dir} was trained with other settings "
            f"({', '.join(differing_keys(want, have))}); delete it or match them"
        )
    if not finished:
        return "resume"
    best = run_dir / "checkpoints" / "best.ckpt"
    # The run's own config was just compared with the wanted one, so the stored config
    # fingerprint need not match: it changes whenever the schema gains a key.
    if (cached is not None and cached.get("eval_fingerprint") == eval_fp and best.is_file()
            and cached.get("checkpoint_sha256") == sha256_file(best)):  # fmt: skip
        return "cached"
    return "evaluate"


def train_command(cfg_path: Path, overrides: list[str], args, run_dir: Path, resume: bool):
    """The ``implicit-vae train`` argument list (one key per --set)."""
    runtime = [f"train.threads={args.threads}", "train.progress_bar=false"]
    if resume:
        keep = [o for o in overrides if o.startswith("train.max_steps=")]
        sets = [*runtime, *keep]
        head = ["train", "--resume", str(run_dir)]
    else:
        sets = [f"data.path={args.data.resolve()}", *overrides, *runtime,
                f"train.run_dir={run_dir}"]  # fmt: skip
        head = ["train", "--config", str(cfg_path)]
    return head + [a for s in sets for a in ("--set", s)]


def train(cmd: list[str], log: Path) -> int:
    """Run ``implicit-vae <cmd>`` in a subprocess with this checkout's package; output to ``log``."""
    env = dict(os.environ)
    src = str(Path(implicit_vae.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
    with log.open("w") as out:
        return subprocess.run([sys.executable, "-m", "implicit_vae.cli", *cmd], stdout=out,
                              stderr=subprocess.STDOUT, env=env).returncode  # fmt: skip


def _ais(model, x, args, steps: int, seed: int):
    x = x.to(next(model.parameters()).device)
    return ais_log_likelihood(
        model.log_likelihood, model.prior, x, chains=args.ais_chains, steps=steps,
        leapfrog_steps=args.ais_leapfrog, batch_size=args.ais_batch_size,
        initial=ais_initial(model, x, seed), seed=seed,
    )  # fmt: skip


def evaluate_run(run_dir: Path, x_test, x_train, args, device, seed: int) -> tuple[dict, dict]:
    """Every number of one run's best.ckpt (see the module docstring) and its per-image tensors."""
    start = time.perf_counter()
    cfg, model, _ = load_run(run_dir, checkpoint="best", with_data=False)
    model.to(device)
    explicit = model.posterior.has_density
    numbers = evaluate_model(
        model, x_test, divergence=cfg.divergence.name, ais_chains=args.ais_chains,
        ais_steps=args.ais_steps, ais_leapfrog_steps=args.ais_leapfrog,
        ais_batch_size=args.ais_batch_size,
        is_samples=args.is_samples if explicit else args.iw_samples,
        iw_mixing_samples=args.iw_mixing, seed=seed, progress=False, per_example=True,
    )  # fmt: skip
    per_image = {k: v.cpu() for k, v in numbers.pop("per_example").items()
                 if k != "log_px_ais_stderr"}  # fmt: skip
    out = {k: numbers[k] for k in ("log_px_ais", "log_px_ais_stderr", "log_px_is",
                                   "log_px_is_stderr", "log_px_iw_semi_implicit",
                                   "log_px_iw_semi_implicit_stderr", "elbo", "elbo_estimate",
                                   "reconstruction_error") if k in numbers}  # fmt: skip
    if len(x_train):
        train_ais = _ais(model, x_train, args, args.ais_steps, seed)
        out.update(train_log_px_ais=train_ais.mean, train_examples=len(x_train),
                   overfitting_gap=train_ais.mean - numbers["log_px_ais"])  # fmt: skip
    n = min(args.check_examples, len(x_test))
    if n:
        longer = _ais(model, x_test[:n], args, args.check_steps, seed + 1).mean
        base = per_image["log_px_ais"][:n].double().mean().item()
        out["ais_steps_check"] = {"examples": n, "steps": args.ais_steps,
                                  "more_steps": args.check_steps, "change": longer - base,
                                  "passed": abs(longer - base) < 0.1}  # fmt: skip
    out["critic_health"] = critic_health(read_metrics(run_dir / "metrics.csv"), numbers, points=0)
    out["unavailable"] = numbers["unavailable"]
    out["eval_wall_time_s"] = round(time.perf_counter() - start, 1)
    out["device"] = str(device)
    return out, per_image


def do_run(setting: str, model: str, seed: int, args, data, device, eval_fp: str) -> dict | None:
    """Train / resume / reuse one run and evaluate it; its record, or None if training failed."""
    name = report.run_name(setting, model, seed)
    run_dir, per_run = args.workdir / name, args.out / "binarized_mnist"
    json_path = per_run / f"{name}.json"
    cached = json.loads(json_path.read_text()) if json_path.is_file() else None
    cfg_path, overrides, want = wanted_config(setting, model, seed, args)
    action = plan(run_dir, want, cached, eval_fp, args.reuse_runs)
    print(f"{name}: {action}", flush=True)
    if action == "cached":
        if cached.get("config_fingerprint") != fingerprint(want):  # checked against the run dir
            cached = {**cached, "config_fingerprint": fingerprint(want)}
            write_result(json_path, cached)
        return cached
    if action in ("train", "resume"):
        cmd = train_command(cfg_path, overrides, args, run_dir, action == "resume")
        code = train(cmd, args.workdir / f"{name}.log")
        if code != 0 or not (run_dir / "summary.json").is_file():
            print(f"{name}: training failed (exit {code}); see {args.workdir / f'{name}.log'}",
                  file=sys.stderr, flush=True)  # fmt: skip
            return None
    summary = json.loads((run_dir / "summary.json").read_text())
    x_test, x_train = data
    numbers, per_image = evaluate_run(run_dir, x_test, x_train, args, device, seed)
    per_run.mkdir(parents=True, exist_ok=True)
    # The per-image file has the layout `implicit-vae compare` reads.
    atomic_save({**per_image, "data_sha256": data_fingerprint(x_test), "run": name},
                per_run / f"{name}.pt")  # fmt: skip
    record = {
        "run": name, "setting": setting, "model": model, "seed": seed,
        "config": cfg_path.name, "overrides": overrides,
        "config_fingerprint": fingerprint(want), "eval_fingerprint": eval_fp,
        "checkpoint": "best",
        "checkpoint_sha256": sha256_file(run_dir / "checkpoints" / "best.ckpt"),
        "steps": summary["steps"], "train_wall_time_s": summary["wall_time_s"],
        "train_device": summary.get("device"), "validation": summary.get("val"),
        "training": {"train": "trained in this run", "resume": "resumed (--reuse-runs)",
                     "evaluate": "reused a finished run (--reuse-runs)"}[action],
        **numbers, "per_image": f"{name}.pt",
    }  # fmt: skip
    write_result(json_path, record)
    return record


# --- the benchmark -----------------------------------------------------------------------------


def evaluation_settings(args, x_test, x_train) -> dict:
    return {"checkpoint": "best", "ais_chains": args.ais_chains, "ais_steps": args.ais_steps,
            "ais_leapfrog_steps": args.ais_leapfrog, "is_samples": args.is_samples,
            "iw_samples": args.iw_samples, "iw_mixing_samples": args.iw_mixing,
            "test_examples": len(x_test), "train_examples": len(x_train),
            "check_examples": args.check_examples, "check_steps": args.check_steps,
            "test_sha256": data_fingerprint(x_test),
            "train_sha256": data_fingerprint(x_train) if len(x_train) else None}  # fmt: skip


def collect(per_run: Path, eval_fp: str) -> dict[str, dict]:
    """Every per-run record in ``per_run`` evaluated with the current settings."""
    out = {}
    for path in sorted(per_run.glob("*.json")):
        record = json.loads(path.read_text())
        if record.get("eval_fingerprint") == eval_fp and record.get("setting") in report.SETTINGS:
            out[record["run"]] = record
    return out


def per_image_loader(per_run: Path):
    def load(name: str):
        path = per_run / f"{name}.pt"
        if not path.is_file():
            return None
        return torch.load(path, map_location="cpu", weights_only=True)[report.PRIMARY]

    return load


_SELECTORS = ("--settings", "--models", "--seeds")


def _selects(token: str) -> bool:
    """Whether ``token`` is one of the selecting options, as argparse reads it (``--set`` is its
    own option, not an abbreviation of ``--settings``)."""
    flag = token.split("=", 1)[0]
    return flag in _SELECTORS or (flag.startswith("--") and len(flag) > 2 and flag != "--set"
                                  and any(s.startswith(flag) for s in _SELECTORS))  # fmt: skip


def rebuild_command(argv: list[str], settings) -> str:
    """The invocation that recomputes every row of a table over ``settings``: ``argv`` without its
    choice of settings, models and seeds (so each setting's default models and seeds), with
    ``--reuse-runs``, so finished runs and matching per-run results are reused, not retrained."""
    kept, skip_value = [], False
    for token in argv:
        if skip_value:
            skip_value = False
        elif _selects(token):
            skip_value = "=" not in token
        else:
            kept.append(token)
    if "--reuse-runs" not in kept:
        kept.append("--reuse-runs")
    return shlex.join(["python", "benchmarks/binarized_mnist.py", "--settings", ",".join(settings),
                       *kept])  # fmt: skip


def write_report(args, command: str, eval_settings: dict, eval_fp: str) -> str:
    per_run = args.out / "binarized_mnist"
    records = collect(per_run, eval_fp)
    peer_path = per_run / "z40_pythae_vae_seed0.json"
    peer = json.loads(peer_path.read_text()) if peer_path.is_file() else None
    built = report.build(records, per_image_loader(per_run), peer)
    settings = sorted({r["setting"] for r in records.values()}) or args.settings
    rebuild = portable(rebuild_command(args.argv, settings))
    table = report.markdown(built, rebuild, eval_settings, last=portable(command))
    write_result(args.out / "binarized_mnist.json", {
        "benchmark": "binarized_mnist", "command": command, "rebuild_command": rebuild,
        "evaluation": eval_settings,
        "eval_fingerprint": eval_fp, "torch_version": torch.__version__, **built,
        "runs": sorted(records),
    })  # fmt: skip
    write_table(args.out / "binarized_mnist.md", table + "\n")
    return table


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--settings", default="a,b,c", help="comma list of a, b, c (default %(default)s)"
    )
    p.add_argument("--models", default=None, help="comma list (default: each setting's models)")
    p.add_argument("--seeds", default=None, help="comma list (default: 0,1,2 for a; 0 for b, c)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--workdir", type=Path, default=None,
                   help=f"run directories (default {DEFAULT_WORKDIR}; with --steps/--quick "
                        f"{DEFAULT_WORKDIR}_steps<N>)")  # fmt: skip
    p.add_argument("--out", type=Path, default=None,
                   help="results (default benchmarks/results; with --steps/--quick/--eval-subset "
                        "<workdir>/results, so smoke runs never overwrite the table)")  # fmt: skip
    p.add_argument("--reuse-runs", action="store_true")
    p.add_argument("--steps", type=int, default=None, help="override train.max_steps")
    p.add_argument("--quick", action="store_true", help="smoke run: few steps, tiny evaluation")
    p.add_argument("--eval-subset", type=int, default=None,
                   help="evaluate the first N test (and training) images only")  # fmt: skip
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="auto", help="evaluation device (auto, cpu, cuda, ...)")
    p.add_argument("--ais-chains", type=int, default=8)
    p.add_argument("--ais-steps", type=int, default=1000)
    # One leapfrog step per transition: on 200 test images of the IW-trained z = 10 models, 1,000
    # such steps sit within 0.04 nat of 3,000 (docs/results/binarized-mnist.md), at a tenth of
    # the cost of 10 leapfrog steps, which made the full evaluation ~7 h per model on one thread.
    p.add_argument("--ais-leapfrog", type=int, default=1)
    p.add_argument("--ais-batch-size", type=int, default=128)
    p.add_argument("--is-samples", type=int, default=5000)
    p.add_argument("--iw-samples", type=int, default=1000, help="semi-implicit IW bound samples")
    p.add_argument("--iw-mixing", type=int, default=100, help="its mixing draws per sample")
    p.add_argument("--train-examples", type=int, default=10_000)
    p.add_argument("--check-examples", type=int, default=100)
    p.add_argument("--check-steps", type=int, default=3000)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override for every run (repeatable)")  # fmt: skip
    p.add_argument("--no-peer", action="store_true", help="skip the pythae peer of setting (b)")
    args = p.parse_args(argv)
    args.argv = list(argv)  # for the table's rebuild command
    if args.quick:
        for key, value in QUICK.items():
            if key in ("steps", "eval_subset") and getattr(args, key) is not None:
                continue
            if key in ("steps", "eval_subset") or getattr(args, key) == p.get_default(key):
                setattr(args, key, value)
    for key in ("steps", "eval_subset", "threads", "ais_chains", "ais_steps", "ais_leapfrog",
                "ais_batch_size", "is_samples", "iw_samples", "iw_mixing"):  # fmt: skip
        value = getattr(args, key)
        if value is not None and value < 1:
            p.error(f"--{key.replace('_', '-')} must be a positive integer, got {value}")
    if args.quick and args.settings == p.get_default("settings"):
        args.settings = "a,b"  # (c)'s conv nets are GPU-sized
    if args.quick and args.seeds is None:
        args.seeds = "0"
    settings = args.settings.split(",")
    bad = [s for s in settings if s not in report.SETTINGS]
    if bad:
        p.error(f"--settings: {','.join(bad)} unknown; expected a comma list of a, b, c")
    args.settings = settings
    known = {m for s in report.SETTINGS.values() for m in s["models"]}
    args.models = args.models.split(",") if args.models else None
    if args.models and not set(args.models) <= known:
        p.error(f"--models: expected a comma list of {', '.join(sorted(known))}")
    try:
        args.seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    except ValueError:
        p.error(f"--seeds: expected a comma list of integers, got {args.seeds!r}")
    smoke = args.steps is not None or args.eval_subset is not None
    if args.workdir is None:
        args.workdir = (Path(f"{DEFAULT_WORKDIR}_steps{args.steps}") if args.steps
                        else DEFAULT_WORKDIR)  # fmt: skip
    if args.out is None:
        args.out = args.workdir / "results" if smoke else DEFAULT_OUT
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = shlex.join(["python", "benchmarks/binarized_mnist.py", *argv])
    args = parse_args(argv)
    flush_denormals()  # subnormal logits cost 2x on the CPU (implicit_vae.cpu)
    torch.set_num_threads(args.threads)
    failed = []
    try:
        device = evaluation_device(args.device)
        data = load_data(args.data.expanduser(), args.eval_subset, args.train_examples)
        eval_settings = evaluation_settings(args, *data)
        eval_fp = fingerprint(eval_settings)
        args.workdir.mkdir(parents=True, exist_ok=True)
        (args.out / "binarized_mnist").mkdir(parents=True, exist_ok=True)
        for setting in args.settings:
            spec = report.SETTINGS[setting]
            for model in spec["models"]:
                if args.models and model not in args.models:
                    continue
                for seed in args.seeds or spec["seeds"]:
                    if do_run(setting, model, seed, args, data, device, eval_fp) is None:
                        failed.append(report.run_name(setting, model, seed))
                    write_report(args, command, eval_settings, eval_fp)  # after every run
            if setting == "b" and not args.no_peer:
                from binarized_mnist_peer import run_peer

                run_peer(args, data, device, eval_fp)
        table = write_report(args, command, eval_settings, eval_fp)
    except (BenchmarkError, ConfigError, DataError, EvaluationError, CheckpointError) as err:
        print(f"benchmarks/binarized_mnist.py: error: {err}", file=sys.stderr)
        return 2
    print(table)
    print(f"wrote {args.out / 'binarized_mnist.json'} and {args.out / 'binarized_mnist.md'}")
    if failed:
        print(f"training failed for {', '.join(failed)} (their goals stay pending)",
              file=sys.stderr)  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
