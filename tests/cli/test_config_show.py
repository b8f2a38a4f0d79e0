"""``implicit-vae config --show``: every key once, with the value train would use, its type, allowed
values and help, all read from the schema; a shown value typed back with ``--set`` gives that value."""

from __future__ import annotations

import dataclasses

import pytest

from implicit_vae.cli import main, resolve_config
from implicit_vae.cli.config import show
from implicit_vae.config import SECTIONS, Config, load_config

FIELDS = [
    (section, f) for section in SECTIONS for f in dataclasses.fields(getattr(Config(), section))
]


@pytest.mark.parametrize("section,f", FIELDS, ids=[f"{s}.{f.name}" for s, f in FIELDS])
def test_every_key_has_one_line_of_help(section, f):
    text = f.metadata.get("help", "")
    assert text and "\n" not in text and len(text) <= 110, f"{section}.{f.name}: {text!r}"


def _entries(text: str) -> dict[str, tuple[str, str]]:
    """key -> (its line, its help line) of a --show listing."""
    lines = text.splitlines()
    assert lines[0].startswith("# ") and len(lines) % 2 == 1
    pairs = list(zip(lines[1::2], lines[2::2]))
    entries = {line.split(" = ")[0]: (line, help_line) for line, help_line in pairs}
    assert len(entries) == len(pairs), "a key was listed twice"
    return entries


def test_show_lists_every_key_with_what_train_would_use(capsys):
    assert main(["config", "--show"]) == 0
    entries = _entries(capsys.readouterr().out)
    assert list(entries) == [f"{s}.{f.name}" for s, f in FIELDS]
    for s, f in FIELDS:
        assert entries[f"{s}.{f.name}"][1] == f"    {f.metadata['help']}"
    # the shipped default config's values, the schema default beside those it changes
    assert entries["model.latent_dim"][0] == "model.latent_dim = 8  (int; >= 1)"
    assert entries["model.n_basis"][0] == "model.n_basis = 8  (int; >= 1; default 16)"
    assert entries["train.lr"][0] == "train.lr = 0.001  (float; > 0.0)"
    assert entries["data.val_fraction"][0] == "data.val_fraction = 0.1  (float; >= 0.0, <= 0.5)"
    assert (
        entries["data.image_shape"][0] == "data.image_shape = null  (list[int] | null; each >= 1)"
    )
    assert entries["model.hidden"][0] == "model.hidden = [256, 256]  (list[int]; each >= 1)"
    assert entries["model.likelihood_options"][0] == "model.likelihood_options = {}  (mapping)"
    assert entries["train.progress_bar"][0] == "train.progress_bar = true  (bool)"
    assert entries["train.precision"][0] == (
        "train.precision = 32-true  (str; one of 32-true, bf16-mixed, 16-mixed)"
    )


def test_show_with_a_config_and_overrides_gives_their_values(capsys):
    argv = ["config", "--show", "--config", "toy4_avb", "--set", "train.max_steps=7"]
    assert main(argv) == 0
    entries = _entries(capsys.readouterr().out)
    assert entries["train.max_steps"][0] == "train.max_steps = 7  (int; >= 1; default 3000)"
    assert entries["data.name"][0].startswith("data.name = toy4  (str; one of ")
    assert entries["data.name"][0].endswith("; default digits)")


@pytest.mark.parametrize(
    "config", ["default", "toy4_avb", "digits_aae_mixture", "mnist_conv_avb_ac"]
)
def test_each_shown_value_typed_back_with_set_gives_that_value(config):
    cfg = load_config(resolve_config(config))
    overrides = []
    for key, (line, _) in _entries(show(config, [])).items():
        value = line.split(" = ", 1)[1].rsplit("  (", 1)[0]
        overrides.append(f"{key}={value}")
    assert load_config(None, overrides).to_dict() == cfg.to_dict()
