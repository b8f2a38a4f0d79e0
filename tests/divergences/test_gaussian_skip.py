"""The one rule for the critics' ½‖z‖² skip (``resolve_gaussian_skip``), checked on built objects:
the same table for an estimator built by hand and put into an ImplicitVAE, for one used on its own,
and for the model the config factory builds. Also: the critics' single default size."""

from __future__ import annotations

import inspect

import pytest
import torch

from implicit_vae.config import ConfigError, load_config
from implicit_vae.config.factory import build_model
from implicit_vae.config.schema import DivergenceConfig
from implicit_vae.divergences import ESTIMATORS
from implicit_vae.divergences.critics import CRITIC_BLOCKS, CRITIC_WIDTH
from implicit_vae.likelihoods import BernoulliLikelihood
from implicit_vae.model import ImplicitVAE, IncompatibleComponentsError
from implicit_vae.posteriors import ImplicitPosterior
from implicit_vae.priors import GaussianMixture, ImplicitPrior, StandardNormal

DATA_DIM, D = 4, 2
PRIORS = {
    "standard_normal": lambda: StandardNormal(D),
    "gaussian_mixture": lambda: GaussianMixture(D, components=3),
    "implicit": lambda: ImplicitPrior(D, noise_dim=2, hidden=(4,)),
}
ERROR = "error"
LOGISTIC = ("avb", "aae")  # the contrast is the prior; auto turns the skip on for p = N(0, I)
BOUNDS = ("kl_nwj", "kl_dv", "reverse_kl", "js")  # the contrast is the prior; auto is off


def _expected(name: str, prior: str, setting: bool | None) -> bool | str:
    """The table, written out by hand (not from the rule's code)."""
    if setting is False:
        return False
    if name == "avb_ac":  # contrast N(0, I) in z̃ whatever the prior; auto off
        return setting is True
    standard = prior == "standard_normal"
    if setting is None:
        return standard and name in LOGISTIC
    return True if standard else ERROR


CASES = [
    (name, prior, setting)
    for name in (*LOGISTIC, "avb_ac", *BOUNDS)
    for prior in PRIORS
    for setting in (None, True, False)
    # avb_ac and the bounds need log p(z): no implicit prior for them
    if not (prior == "implicit" and name not in LOGISTIC)
]


def _estimator(name: str, setting: bool | None):
    return ESTIMATORS[name](DATA_DIM, D, width=8, blocks=1, gaussian_skip=setting)


def _model(estimator, prior) -> ImplicitVAE:
    posterior = ImplicitPosterior(DATA_DIM, D, hidden=(8,), noise_dim=2)
    return ImplicitVAE(posterior, prior, BernoulliLikelihood(D, DATA_DIM, hidden=(8,)), estimator)


@pytest.mark.parametrize(("name", "prior", "setting"), CASES)
def test_library_construction_follows_the_table(name, prior, setting):
    """Built by hand: ImplicitVAE resolves the skip for its prior (or refuses True where it means
    nothing), and a lone estimator's estimate/critic_loss resolve it the same way."""
    expected = _expected(name, prior, setting)
    if expected == ERROR:
        with pytest.raises(IncompatibleComponentsError, match="only for a standard normal prior"):
            _model(_estimator(name, setting), PRIORS[prior]())
        return
    model = _model(_estimator(name, setting), PRIORS[prior]())
    assert model.estimator.critic.gaussian_skip is expected
    torch.manual_seed(0)
    x = torch.randint(0, 2, (3, DATA_DIM)).float()
    alone = _estimator(name, setting)
    q = model.posterior.sample(x, 2)
    alone.critic_loss(x, q, PRIORS[prior]())
    assert alone.critic.gaussian_skip is expected
    alone.estimate(x, q, PRIORS[prior]())
    assert alone.critic.gaussian_skip is expected


def _config(name: str, prior: str, *extra: str):
    return load_config(overrides=[
        f"divergence.name={name}", f"model.prior={prior}", "model.posterior=implicit",
        "model.hidden=[8]", "divergence.critic_width=8", "divergence.critic_blocks=1",
        *(["model.prior_hidden=[4]"] if prior == "implicit" else []), *extra,
    ])  # fmt: skip


# divergence.gaussian_skip -> the class argument it stands for (true: auto, see the schema)
CONFIG_VALUES = {"auto": None, "true": None, "false": False}


@pytest.mark.parametrize(("name", "prior", "setting"), CASES)
def test_factory_construction_follows_the_table(name, prior, setting):
    """The CLI's route: the typed key (auto/true/false) and, for the class argument True, the
    options mapping, give the library's answer; a refusal is a one-line ConfigError."""
    if setting is True:
        overrides = ["divergence.options={gaussian_skip: true}"]
    else:
        value = "false" if setting is False else "auto"
        overrides = [f"divergence.gaussian_skip={value}"]
    expected = _expected(name, prior, setting)
    cfg = _config(name, prior, *overrides)
    if expected == ERROR:
        with pytest.raises(ConfigError, match=r"^divergence\.options: gaussian_skip=True") as err:
            build_model(cfg, DATA_DIM)
        assert "\n" not in str(err.value)
        return
    assert build_model(cfg, DATA_DIM).estimator.critic.gaussian_skip is expected


@pytest.mark.parametrize("name", [*LOGISTIC, "avb_ac", *BOUNDS])
@pytest.mark.parametrize("prior", ["standard_normal", "gaussian_mixture"])
def test_an_old_configs_true_is_auto(name, prior):
    """Before auto existed the schema's default was true and meant 'avb/aae with N(0, I) only':
    a stored true builds what auto builds."""
    old = build_model(_config(name, prior, "divergence.gaussian_skip=true"), DATA_DIM)
    new = build_model(_config(name, prior), DATA_DIM)
    assert old.estimator.critic.gaussian_skip is new.estimator.critic.gaussian_skip
    assert old.estimator.critic.gaussian_skip is _expected(name, prior, None)


@pytest.mark.parametrize("name", ["avb", "aae", "avb_ac"])
def test_waymarks_have_no_fixed_skip(name):
    """Telescoping critics never add ½‖z‖²; True is refused there, auto and False are fine."""
    with pytest.raises(ValueError, match="no effect with waymarks > 1"):
        ESTIMATORS[name](DATA_DIM, D, width=8, blocks=1, gaussian_skip=True, waymarks=2)
    est = ESTIMATORS[name](DATA_DIM, D, width=8, blocks=1, waymarks=2)
    model = _model(est, StandardNormal(D))
    assert all(not c.gaussian_skip for c in model.estimator.critic.critics)


@pytest.mark.parametrize("value", ["always", 1, "auto please"])
def test_bad_values_are_one_line_errors(value):
    with pytest.raises(ConfigError, match=r"^divergence\.gaussian_skip: .*expected"):
        load_config(overrides=[f"divergence.gaussian_skip={value}"])
    with pytest.raises(ValueError, match="None \\(auto\\), True or False"):
        ESTIMATORS["avb"](DATA_DIM, D, gaussian_skip=value)


def test_false_and_options_true_contradict():
    cfg = _config("avb", "standard_normal", "divergence.gaussian_skip=false",
                  "divergence.options={gaussian_skip: true}")  # fmt: skip
    with pytest.raises(ConfigError, match="contradicts"):
        build_model(cfg, DATA_DIM)


SKIP_TAKERS = sorted(n for n, c in ESTIMATORS.items()
                     if "gaussian_skip" in inspect.signature(c.__init__).parameters)  # fmt: skip


@pytest.mark.parametrize("name", SKIP_TAKERS)
def test_one_default_for_skip_and_size(name):
    """Every critic-based estimator defaults to auto and to the one critic size, which is also the
    config's."""
    params = inspect.signature(ESTIMATORS[name].__init__).parameters
    assert params["gaussian_skip"].default is None
    assert (params["width"].default, params["blocks"].default) == (CRITIC_WIDTH, CRITIC_BLOCKS)
    config = DivergenceConfig()
    assert (config.critic_width, config.critic_blocks) == (CRITIC_WIDTH, CRITIC_BLOCKS)
    assert config.gaussian_skip == "auto"
    assert set(SKIP_TAKERS) == {*LOGISTIC, "avb_ac", *BOUNDS}
