"""How much slower than bare PyTorch are our trainer and our AIS? Every figure is a ratio a / b.

a and b run in one process, interleaved (A, B, A, B, …) at the finest grain that keeps them apart, so
the load of a shared machine falls on both; each figure is the median ratio of ``--pairs`` pairs.

(a) ``train_step``: one AVB-AC training step (default digits config) inside ``implicit_vae.train.fit``
    against a bare PyTorch loop over the same nets, optimizers, batch stream and critic steps. A
    wrapper of the loop's ``training_step`` runs one bare step at each batch start, timed apart; fit's
    step is the rest of the time to the next batch start (training step, guards, hooks, logging, the
    next batch's fetch). The last step (validation, checkpoint) is left out; the whole ``fit`` per step
    (start-up, validation, checkpoint, test evaluation, plots) is reported for scale. A pair is a fit.
(b) ``ais_floor``: ``ais_log_likelihood`` (digits-sized decoder) against its floor, the same number of
    decoder forward+backward passes (``autograd.grad`` of log p(x|z) w.r.t. z) on the same shapes: the
    log-likelihood handed to AIS runs one floor pass, timed apart, before each of its own. A pair is an
    AIS run. For scale: AIS called once per example against batched AIS, per example.
(c) ``ais_memory``: peak RSS during AIS (``batch_size`` 128) in fresh processes, on 1,000 against 250
    examples (Linux: VmHWM, reset just before AIS); it must stay flat. For scale, and to show that
    the check sees growth: the same with all examples in one batch.

    python benchmarks/speed.py               # the full run (~15 min on one core)
    python benchmarks/speed.py --quick       # a smoke run

Writes benchmarks/results/speed.json (atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from implicit_vae.cli import resolve_config
from implicit_vae.config import load_config
from implicit_vae.config.factory import build_model
from implicit_vae.data import load_dataset
from implicit_vae.data.stream import BatchStream
from implicit_vae.evaluation import ais_log_likelihood
from implicit_vae.evaluation.ais import default_pilot_steps, pilot_transitions
from implicit_vae.evaluation.run import ais_initial
from implicit_vae.training.runs import write_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed_floor import NetworkFloor  # noqa: E402
from speed_peers import peer_figures  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
GOALS = {"train_step": 1.10, "ais_floor": 1.25, "ais_memory": 1.05, "step_floor": 1.3,
         "peer_epoch": 1.0}  # fmt: skip
MNIST_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
# train: steps per fit; ais: examples x steps (naive: examples of the per-example loop); memory:
# numbers of examples x steps.
FULL = dict(train=200, ais=128, ais_steps=100, naive=4, memory=[250, 500, 1000], memory_steps=20,
            peer_examples=10_000)  # fmt: skip
QUICK = dict(train=20, ais=16, ais_steps=5, naive=2, memory=[40, 80], memory_steps=2,
             peer_examples=500)  # fmt: skip
CHAINS, LEAPFROG, AIS_BATCH = 8, 10, 128


def figure(a: list[float], b: list[float], goal: float | None, timed: str, **extra) -> dict:
    """The pairs (a_i, b_i), their ratios, the median ratio, its goal (None: for scale) and verdict."""
    ratios = [x / y for x, y in zip(a, b)]
    median = statistics.median(ratios)
    verdict = None if goal is None else median <= goal
    out = {"median_ratio": median, "goal": goal, "pass": verdict, "timed": timed, "ratios": ratios}
    return {**out, "pairs": [{"a": x, "b": y} for x, y in zip(a, b)], **extra}


# --- (a) one training step: fit against a bare loop ---------------------------------------------
class BareLoop:
    """The same training without our trainer: the model (``build_model``), Adam optimizers, batch
    stream and critic steps of ``cfg``, with no guards, logging or hooks."""

    def __init__(self, cfg):
        t = self.t = cfg.train
        data = load_dataset(cfg.data, t.seed)
        self.model = build_model(cfg, data.data_dim).train()
        self.stream = BatchStream(data.train, t.batch_size, t.seed, data.dynamic_binarize)
        betas = (t.beta1, t.beta2)
        self.opt = torch.optim.Adam(self.model.model_parameters(), lr=t.lr, betas=betas)
        critic = list(self.model.critic_parameters())  # none for an analytic KL
        self.critic = torch.optim.Adam(critic, lr=t.critic_lr, betas=betas) if critic else None

    def step(self, k: int) -> None:
        x, t, model = self.stream[k], self.t, self.model
        for _ in range(t.critic_steps if self.critic is not None else 0):
            self.critic.zero_grad(set_to_none=True)
            model.critic_loss(x, t.n_samples).loss.backward()
            self.critic.step()
        self.opt.zero_grad(set_to_none=True)
        model(x, t.n_samples).loss.backward()
        self.opt.step()


class FloorLoop:
    """The compute floor of ``cfg``'s training step (:class:`speed_floor.NetworkFloor`): its
    networks' forward and backward passes on the shapes one step gives them, nothing else."""

    def __init__(self, cfg):
        t = cfg.train
        data = load_dataset(cfg.data, t.seed)
        model = build_model(cfg, data.event_shape).train()
        stream = BatchStream(data.train, t.batch_size, t.seed, data.dynamic_binarize)
        self.floor = NetworkFloor(model, stream[0], t.n_samples, t.critic_steps)

    def step(self, k: int) -> None:
        self.floor.step()


def time_fit(
    steps: int, threads: int, run_dir: Path, reference="bare", config=None, overrides=()
) -> dict[str, float]:
    """Seconds of fit's steps 1…N−1 and of the ``reference`` steps run between them (see the
    module's docstring; ``"bare"``: :class:`BareLoop`, None: no reference, or a class taking the
    config), and of the whole ``fit`` (reference steps left out), its start-up and its tail.
    ``config`` and ``overrides`` choose the run (default config)."""
    from implicit_vae.training import fit as train_module
    from implicit_vae.training.module import TwoPlayerLoop

    sets = f"max_steps={steps} threads={threads} progress_bar=false run_dir={run_dir}"
    cfg = load_config(config, [*overrides, *(f"train.{s}" for s in sets.split())])
    make = BareLoop if reference == "bare" else reference
    bare, t = (make(cfg) if make is not None else None), {"fit": 0.0, "bare": 0.0}
    calls = [0]
    own_step = TwoPlayerLoop.training_step

    def interleaved(self, x):  # at each batch start, as a Lightning callback used to be
        batch_idx, now = calls[0], time.perf_counter()
        calls[0] += 1
        if batch_idx:
            t["fit"] += now - t["end"]
        else:
            t["first"] = now
        if bare is not None and batch_idx < steps - 1:
            bare.step(batch_idx)
            t["bare"] += time.perf_counter() - now
        t["end"] = time.perf_counter()
        return own_step(self, x)

    TwoPlayerLoop.training_step = interleaved
    try:
        start = time.perf_counter()
        train_module.fit(cfg)
        whole = time.perf_counter() - start - t["bare"]
    finally:
        TwoPlayerLoop.training_step = own_step
    startup, tail = t["first"] - start, time.perf_counter() - t["end"]
    return {"steps": t["fit"], "bare": t["bare"], "whole": whole, "startup": startup, "tail": tail}


def train_step_figure(steps: int, pairs: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="speed_") as tmp:
        fits = [time_fit(steps, threads, Path(tmp) / str(i)) for i in range(pairs)]
    bare = [f["bare"] / (steps - 1) for f in fits]
    what = f"seconds: the whole fit() of {steps} steps / {steps} (a) vs a bare step (b); for scale"
    extra = {"startup_s": [f["startup"] for f in fits], "tail_s": [f["tail"] for f in fits]}
    whole = figure([f["whole"] / steps for f in fits], bare, None, what, **extra)
    what = (
        f"seconds per AVB-AC step (default digits config, {steps - 1} steps a pair) in "
        "implicit_vae.train.fit (a) vs a bare loop, one step run before each fit step (b)"
    )
    fit_steps = [f["steps"] / (steps - 1) for f in fits]
    return figure(fit_steps, bare, GOALS["train_step"], what, steps=steps, whole_fit=whole)


# --- (d) a training step against its compute floor; (e) AVB-AC against a Gaussian VAE ----------
def step_floor_figures(steps: int, pairs: int, threads: int) -> dict:
    """(d) for the default digits config and the MNIST AVB-AC config (skipped, with the reason, when
    the MNIST files are missing): fit's step against :class:`FloorLoop`, interleaved per step."""
    out = {}
    cases = {"digits_default": (None, ())}
    if (MNIST_DATA / "t10k-images-idx3-ubyte.gz").is_file():
        mnist = ("mnist_avb_ac", (f"data.path={MNIST_DATA}", "data.mnist_train_limit=2000"))
        cases["mnist_avb_ac"] = (resolve_config(mnist[0]), mnist[1])
    else:
        out["mnist_avb_ac"] = {"skipped": f"no MNIST files in {MNIST_DATA}"}
    with tempfile.TemporaryDirectory(prefix="speed_") as tmp:
        for name, (config, overrides) in cases.items():
            fits = [
                time_fit(steps, threads, Path(tmp) / f"{name}{i}", FloorLoop, config, overrides)
                for i in range(pairs)
            ]
            what = (
                f"seconds per AVB-AC step ({name}, {steps - 1} steps a pair) in fit (a) vs the bare "
                "forward and backward passes of exactly its networks on the same shapes (b)"
            )
            a = [f["steps"] / (steps - 1) for f in fits]
            b = [f["bare"] / (steps - 1) for f in fits]
            out[name] = figure(a, b, GOALS["step_floor"], what, steps=steps)
    return out


def vae_step_figure(steps: int, pairs: int, threads: int) -> dict:
    """(e) an AVB-AC step against a Gaussian-VAE step with the same encoder trunk widths and decoder
    (default digits config; the VAE: posterior gaussian, closed-form KL), fit against fit."""
    vae = ("model.posterior=gaussian", "divergence.name=analytic")
    a, b = [], []
    with tempfile.TemporaryDirectory(prefix="speed_") as tmp:
        for i in range(pairs):
            for runs, overrides in ((a, ()), (b, vae)):
                run = time_fit(steps, threads, Path(tmp) / f"{len(runs)}{i}", None, None, overrides)
                runs.append(run["steps"] / (steps - 1))
    what = (
        f"seconds per step in fit: AVB-AC (a) vs a Gaussian VAE with the same trunk and decoder "
        f"(b), default digits config, {steps - 1} steps a run"
    )
    return figure(a, b, None, what, steps=steps)



# --- (b) AIS against its floor ------------------------------------------------------------------
def ais_setup(examples: int, seed: int = 0):
    """An untrained default-config model (eval mode), ``examples`` binary digits (tiled) and AIS's
    start, q(z|x)'s moments (as ``implicit-vae evaluate`` uses for this model)."""
    torch.manual_seed(seed)
    cfg = load_config()
    data = load_dataset(cfg.data, seed)
    model = build_model(cfg, data.data_dim).eval()
    x = torch.bernoulli(data.train, generator=torch.Generator().manual_seed(seed))
    x = x.repeat(-(-examples // x.shape[0]), 1)[:examples]
    return model, x, ais_initial(model, x, seed)


def run_ais(model, x, initial, steps: int, log_likelihood=None, batch_size=AIS_BATCH) -> None:
    kw = {"chains": CHAINS, "leapfrog_steps": LEAPFROG, "batch_size": batch_size}
    fn = log_likelihood or model.log_likelihood
    ais_log_likelihood(fn, model.prior, x, steps=steps, initial=initial, **kw)


def decoder_passes(examples: int, steps: int) -> list[int]:
    """Batch sizes of the decoder forward+backward passes AIS makes: per batch and per pass (the
    step-size pilot, then the reported chains), one at the start and ``leapfrog`` per transition
    (``steps − 1`` transitions for the reported chains; the last β needs none)."""
    sizes = [min(AIS_BATCH, examples - s) for s in range(0, examples, AIS_BATCH)]
    pilot = 1 + pilot_transitions(default_pilot_steps(steps)) * LEAPFROG
    per_batch = pilot + 1 + (steps - 1) * LEAPFROG
    return [b for b in sizes for _ in range(per_batch)]


class WithFloor:
    """``model.log_likelihood`` that first makes one floor pass on the same shapes, timed apart."""

    def __init__(self, model):
        self.model, self.seconds, self.passes = model, 0.0, []

    def __call__(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        with torch.enable_grad():
            leaf = z.detach().requires_grad_(True)
            torch.autograd.grad(self.model.log_likelihood(x, leaf).sum(), leaf)
        self.seconds += time.perf_counter() - start
        self.passes.append(z.shape[1])
        return self.model.log_likelihood(x, z)


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def per_example(model, x, initial, steps: int) -> None:
    for i in range(x.shape[0]):
        run_ais(model, x[i : i + 1], (initial[0][i : i + 1], initial[1][i : i + 1]), steps)


def ais_floor_figure(examples: int, steps: int, naive_examples: int, pairs: int) -> dict:
    model, x, initial = ais_setup(examples)
    passes = decoder_passes(examples, steps)
    ais, floor = [], []
    for _ in range(pairs):
        wrapped = WithFloor(model)
        total = timed(run_ais, model, x, initial, steps, wrapped)
        if wrapped.passes != passes:
            raise RuntimeError(f"AIS made {len(wrapped.passes)} passes, expected {len(passes)}")
        ais.append(total - wrapped.seconds)
        floor.append(wrapped.seconds)
    naive, batched = [], []
    few = (x[:naive_examples], tuple(t[:naive_examples] for t in initial))
    for _ in range(pairs):
        naive.append(timed(per_example, model, *few, steps) / naive_examples)
        batched.append(timed(run_ais, model, x, initial, steps) / examples)
    what = f"seconds per example: AIS on 1 example at a time (a) vs on {examples} (b); for scale"
    scale = figure(naive, batched, None, what)
    what = (
        f"seconds: AIS on {examples} examples x {CHAINS} chains x {steps} steps x {LEAPFROG} "
        f"leapfrog (a) vs its {len(passes)} decoder forward+backward passes alone (b)"
    )
    extra = {"decoder_passes": len(passes), "per_example_loop": scale}
    return figure(ais, floor, GOALS["ais_floor"], what, **extra)


# --- (c) AIS peak memory --------------------------------------------------------------------------
def _memory() -> dict[str, float]:
    status = Path("/proc/self/status").read_text()
    return {k: int(re.search(rf"{k}:\s+(\d+)", status).group(1)) / 1024 for k in ("VmRSS", "VmHWM")}


def memory_child(examples: int, steps: int, batch_size: int = AIS_BATCH) -> dict[str, float]:
    """RSS (MiB) of this process before AIS on ``examples`` examples and its peak during AIS: the
    peak (VmHWM) is reset to the current RSS first, so nothing done before AIS can hide its use."""
    model, x, initial = ais_setup(examples)
    run_ais(model, x[:AIS_BATCH], tuple(t[:AIS_BATCH] for t in initial), 2)  # warm-up
    Path("/proc/self/clear_refs").write_text("5")  # Linux >= 4.0: peak RSS := current RSS
    start = _memory()["VmRSS"]
    run_ais(model, x, initial, steps, batch_size=batch_size)
    peak = _memory()["VmHWM"]
    return {"start_mib": start, "peak_mib": peak, "growth_mib": peak - start}


def _spawn(examples: int, steps: int, threads: int, batch: int = AIS_BATCH) -> dict[str, float]:
    args = f"--memory-child {examples} --memory-steps {steps} --threads {threads} --batch {batch}"
    cmd = [sys.executable, __file__, *args.split()]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def ais_memory_figure(sizes: list[int], steps: int, pairs: int, threads: int) -> dict:
    runs: dict[int, list[dict]] = {n: [] for n in sizes}
    one: dict[int, list[float]] = {n: [] for n in (sizes[0], sizes[-1])}
    for _ in range(pairs):  # interleaved: small, …, large, small, …
        for n in sizes:
            runs[n].append(_spawn(n, steps, threads))
        for n in one:  # the check can see growth: AIS in one batch of all examples
            one[n].append(_spawn(n, steps, threads, batch=n)["peak_mib"])
    keys = runs[sizes[0]][0]
    med = {k: {n: statistics.median(r[k] for r in runs[n]) for n in sizes} for k in keys}
    peak = {n: [r["peak_mib"] for r in runs[n]] for n in sizes}
    what = "the same with batch_size = the number of examples; for scale (it must grow)"
    scale = figure(one[sizes[-1]], one[sizes[0]], None, what)
    what = f"peak RSS (MiB) in AIS, {steps} steps, on {sizes[-1]} examples (a) vs {sizes[0]} (b)"
    extra = {"sizes": sizes, **med, "one_batch": scale}
    return figure(peak[sizes[-1]], peak[sizes[0]], GOALS["ais_memory"], what, **extra)


# --- command line ---------------------------------------------------------------------------------
def table(figures: dict[str, dict]) -> str:
    rows = [f"{'figure':28s} {'median':>7s}  goal  pass   ratios of the pairs"]
    for name, f in figures.items():
        if "skipped" in f:  # the whole figure, e.g. the peers without pythae
            rows.append(f"{name:28s} skipped: {f['skipped']}")
            continue
        subs = [(f"{name}.{k}", v) for k, v in f.items() if isinstance(v, dict) and "ratios" in v]
        skipped = [(f"{name}.{k}", v) for k, v in f.items() if isinstance(v, dict) and "skipped" in v]
        rows += [f"{label:28s} skipped: {g['skipped']}" for label, g in skipped]
        for label, g in [(name, f), *subs] if "ratios" in f else subs:
            ratios = ", ".join(f"{r:.3f}" for r in g["ratios"])
            goal, verdict = ("-" if g[k] is None else str(g[k]) for k in ("goal", "pass"))
            rows.append(f"{label:28s} {g['median_ratio']:7.3f}  {goal:4s}  {verdict:5s}  {ratios}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--pairs", type=int, default=5, help="interleaved pairs per figure (>= 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=RESULTS / "speed.json")
    before = "a speed.json of the code before a change, whose ratios are copied in as 'before'"
    parser.add_argument("--before", type=Path, help=before)
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--memory-steps", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=AIS_BATCH, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_child is not None:
        print(json.dumps(memory_child(args.memory_child, args.memory_steps, args.batch)))
        return 0
    sizes = QUICK if args.quick else FULL
    quick = " --quick" if args.quick else ""
    command = f"python benchmarks/speed.py{quick} --pairs {args.pairs} --threads {args.threads}"
    load = os.getloadavg()[0]
    pairs, threads = max(1, args.pairs), args.threads
    figures = {
        "train_step": train_step_figure(sizes["train"], pairs, threads),
        "ais_floor": ais_floor_figure(sizes["ais"], sizes["ais_steps"], sizes["naive"], pairs),
        "ais_memory": ais_memory_figure(sizes["memory"], sizes["memory_steps"], pairs, threads),
        "step_floor": step_floor_figures(sizes["train"], pairs, threads),
        "avb_ac_vs_vae": vae_step_figure(sizes["train"], pairs, threads),
        "peer_epoch": peer_figures(sizes["peer_examples"], pairs, threads, GOALS["peer_epoch"], figure),
    }
    for f in figures.values():
        for part in f.values() if "median_ratio" not in f else [f]:
            if isinstance(part, dict):
                part["command"] = command
    print(table(figures))
    machine = dict(torch=torch.__version__, python=platform.python_version(), cpus=os.cpu_count())
    report = {"benchmark": "speed", "command": command, "quick": args.quick, "sizes": sizes}
    report.update(machine=machine, load_average_at_start=load, figures=figures)
    if args.before is not None:
        old = json.loads(args.before.read_text())
        report["before"] = {k: v["median_ratio"] for k, v in old["figures"].items()}
        report["before_command"] = old.get("command")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
