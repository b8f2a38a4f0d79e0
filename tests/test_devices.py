"""Device plumbing, tested on the CPU: accelerator and layout choice, mixed precision, CUDA RNG
states in checkpoints and forks (with a fake CUDA), batches and AIS on another device (``meta``,
where no value can be read back: whatever runs there makes no host copy)."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from implicit_vae import rng
from implicit_vae.cli import main
from implicit_vae.config import ConfigError, load_config
from implicit_vae.config.factory import build_model
from implicit_vae.data.stream import BatchStream
from implicit_vae.evaluation import ais_log_likelihood
from implicit_vae.training import checkpoint
from implicit_vae.training.devices import check_layout, resolve_accelerator
from implicit_vae.training.distributed import ShardedStream, World, process_group_backend
from implicit_vae.training.fit import fit
from implicit_vae.training.logs import MetricsCSV
from tiny_runs import TINY_NETWORKS

SMALL = [*TINY_NETWORKS, "train.val_every=5", "train.checkpoint_every=5", "train.log_every=2"]


def test_auto_resolves_to_the_cpu_here_and_missing_devices_are_one_line_errors():
    assert not torch.cuda.is_available()  # this test documents the CPU-only test machine
    assert resolve_accelerator("auto") == "cpu" and resolve_accelerator("cpu") == "cpu"
    for name in ("gpu", "cuda"):
        with pytest.raises(ConfigError, match=f"train.accelerator: '{name}' needs a CUDA GPU"):
            resolve_accelerator(name)
    assert process_group_backend("cuda") == "nccl" and process_group_backend("cpu") == "gloo"
    with pytest.raises(ConfigError, match="'16-mixed' needs a CUDA GPU"):
        check_layout(None, "16-mixed", "cpu", World())
    with pytest.raises(ConfigError, match="train.devices: 2 devices need 2 processes.*torchrun"):
        check_layout(2, "32-true", "cpu", World())
    two = World(rank=0, world_size=4, local_world_size=2, ddp=True)  # 2 machines x 2
    assert check_layout(None, "bf16-mixed", "cpu", two) == 2
    assert check_layout(2, "32-true", "cpu", two) == 2
    with pytest.raises(ConfigError, match="torchrun started 2 processes on this machine"):
        check_layout(4, "32-true", "cpu", two)


def test_cli_refuses_an_absent_gpu_in_one_line(tmp_path, capsys):
    argv = ["train", "--set", "train.accelerator=gpu", "--set", f"train.run_dir={tmp_path}/r"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "needs a CUDA GPU" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_bf16_mixed_run_on_the_cpu_finishes_with_finite_losses_and_resumes(tmp_path):
    run = tmp_path / "run"
    extra = ["train.precision=bf16-mixed", "train.max_steps=10", f"train.run_dir={run}"]
    _, summary = fit(load_config(overrides=[*SMALL, *extra]))
    assert summary["precision"] == "bf16-mixed" and summary["device"] == "cpu"
    for split in ("train", "val", "test"):
        assert all(math.isfinite(v) for v in summary[split].values()), split
    ckpt = checkpoint.load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert all(v.dtype == torch.float32 for v in ckpt["model"].values() if v.is_floating_point())
    _, summary = fit(None, resume=run, resume_overrides={"train.max_steps": 14})
    assert summary["steps"] == 14 and math.isfinite(summary["train"]["loss"])


def test_accelerator_may_change_on_resume_and_the_run_stays_exact(tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    fit(load_config(overrides=[*SMALL, "train.max_steps=10", f"train.run_dir={whole}"]))
    fit(load_config(overrides=[*SMALL, "train.max_steps=5", f"train.run_dir={split}"]))
    overrides = {"train.max_steps": 10, "train.accelerator": "cpu", "train.devices": 1}
    fit(None, resume=split, resume_overrides=overrides)
    a, b = (checkpoint.load_checkpoint(r / "checkpoints" / "last.ckpt") for r in (whole, split))
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    with pytest.raises(ConfigError, match="cannot be changed when resuming"):
        fit(None, resume=split, resume_overrides={"train.precision": "bf16-mixed"})


class _FakeCuda:
    """Two CUDA devices whose generator states are byte tensors kept here."""

    def __init__(self, monkeypatch):
        self.states = [torch.full((16,), 7, dtype=torch.uint8), torch.arange(16, dtype=torch.uint8)]
        self.set_calls: list[int] = []
        cuda = torch.cuda
        monkeypatch.setattr(cuda, "is_available", lambda: True)
        monkeypatch.setattr(cuda, "is_initialized", lambda: True)
        monkeypatch.setattr(cuda, "device_count", lambda: 2)
        monkeypatch.setattr(cuda, "get_rng_state", lambda i=0: self.states[i].clone())
        monkeypatch.setattr(cuda, "set_rng_state", self._set)

    def _set(self, state, i=0):
        self.set_calls.append(i)
        self.states[i] = state.clone()


def test_cuda_rng_states_are_checkpointed_and_restored_per_device(tmp_path, monkeypatch):
    fake = _FakeCuda(monkeypatch)
    states = rng.collect_rng_states()
    assert [torch.equal(s, t) for s, t in zip(states["cuda"], fake.states)] == [True, True]
    path = tmp_path / "rng.ckpt"
    checkpoint.atomic_save({"rng": states}, path)
    loaded = torch.load(path, weights_only=True)["rng"]
    rng.check_rng_states(loaded)  # the layout load_checkpoint accepts
    saved = [s.clone() for s in fake.states]
    fake.states = [torch.zeros(16, dtype=torch.uint8)] * 2  # the generators move on
    rng.restore_rng_states(loaded)
    assert fake.set_calls == [0, 1] and all(torch.equal(a, b) for a, b in zip(fake.states, saved))
    with pytest.raises(TypeError, match="cuda states are not uint8 tensors"):
        rng.check_rng_states({**loaded, "cuda": [torch.zeros(3)]})


def test_forked_rng_forks_every_cuda_device_in_use(monkeypatch):
    _FakeCuda(monkeypatch)
    seen = []

    def fork_rng(devices=None, **kwargs):
        seen.append(list(devices))
        return torch.random.fork_rng.__wrapped__(devices=[], **kwargs)  # the real CPU fork

    fork_rng.__wrapped__ = torch.random.fork_rng
    monkeypatch.setattr(torch.random, "fork_rng", fork_rng)
    before = torch.get_rng_state()
    cpu_seed = torch.random.default_generator.manual_seed
    monkeypatch.setattr(torch, "manual_seed", cpu_seed)  # the fake CUDA cannot be seeded
    with rng.forked_rng(seed=5):
        torch.rand(3)
    assert seen == [[0, 1]] and torch.equal(torch.get_rng_state(), before)


def test_no_cuda_state_is_read_before_cuda_is_used(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    assert rng.cuda_devices_in_use() == [] and "cuda" not in rng.collect_rng_states()


def test_batches_are_made_on_the_stream_device():
    data = torch.rand(40, 6)
    cpu = BatchStream(data, 8, seed=2, dynamic_binarize=True)
    meta = BatchStream(data, 8, seed=2, dynamic_binarize=False, device="meta")
    assert meta.data.device.type == "meta" and meta[3].device.type == "meta"
    assert tuple(meta[3].shape) == (8, 6)
    shard = ShardedStream(meta, World(rank=1, world_size=2, ddp=True))[3]
    assert shard.device.type == "meta" and tuple(shard.shape) == (4, 6)
    again = BatchStream(data, 8, seed=2, dynamic_binarize=True, device="cpu")
    assert torch.equal(cpu[5], again[5])  # the device argument changes no CPU batch


def test_ais_runs_on_the_device_the_model_is_on():
    model = build_model(load_config(overrides=["model.hidden=[16]", "model.n_basis=2"]), 64)
    model.to("meta").eval()
    x = torch.bernoulli(torch.full((5, 64), 0.5))  # on the CPU; AIS moves it to the model
    est = ais_log_likelihood(model.log_likelihood, model.prior, x, chains=2, steps=3)
    assert est.log_px.device.type == "meta" and tuple(est.log_px.shape) == (5,)


def test_evaluate_refuses_a_device_it_does_not_have(capsys):
    for device, expected in (("cuda", "torch sees no such CUDA device"), ("bogus", "not a device")):
        assert main(["evaluate", "/nonexistent-run", "--device", device]) == 2
        err = capsys.readouterr().err.strip()
        assert f"--device: '{device}'" in err and expected in err and len(err.splitlines()) == 1


def test_evaluate_on_an_explicit_cpu_device(tmp_path, capsys):
    run = tmp_path / "run"
    fit(load_config(overrides=[*SMALL, "train.max_steps=4", f"train.run_dir={run}"]))
    out = tmp_path / "eval.json"
    argv = ["evaluate", str(run), "--device", "cpu", "--ais-steps", "3", "--ais-chains", "2"]
    argv += ["--is-samples", "4", "--max-examples", "6", "--no-ais-curve", "--json", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    assert math.isfinite(json.loads(out.read_text())["log_px_ais"])


def test_metrics_csv_continues_without_duplicate_rows(tmp_path):
    path = tmp_path / "metrics.csv"
    logs = MetricsCSV(path)
    for step in (2, 4, 6):
        logs.log({"train/loss": float(step)}, step)
    logs.log({"val/loss": 1.0}, 4)  # a new column: the file is rewritten with it
    resumed = MetricsCSV(path, resume_step=4)
    resumed.log({"train/loss": 6.5}, 6)
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["step"], r["train/loss"], r["val/loss"]) for r in rows] == [
        ("2", "2.0", ""),
        ("4", "4.0", ""),
        ("4", "", "1.0"),
        ("6", "6.5", ""),
    ]
    assert not list(tmp_path.glob(".*.tmp"))
