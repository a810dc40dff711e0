"""Bad parameters are refused before anything runs, with a message naming them."""

import pytest

from vgh_lib.driver import cli, registry
from vgh_lib.experiments import designs
from vgh_lib.driver.registry import Theorem1Params
from vgh_lib.harness.params import ParameterError

NB = "01_costates_are_value_gradients"


def test_defaults_are_valid_and_are_the_default_profile():
    p = registry.resolve(NB)
    assert p == Theorem1Params()
    assert registry.NOTEBOOKS[NB].profiles["default"] == {}


@pytest.mark.parametrize("overrides,match", [
    ({"horizn": "3"}, r"unknown parameter.*'horizn'.*allowed: .*horizon"),
    ({"horizon": "-3"}, r"'horizon' = -3 is out of range; allowed: int in \[1, 50\]"),
    ({"horizon": "3.5"}, r"'horizon' = '3.5' cannot be read as int"),
    ({"sigma": "big"}, r"'sigma' = 'big' cannot be read as float"),
    ({"sigma": "0"}, r"'sigma' = 0.0 is out of range; allowed: float in \[0.01, 1.0\]"),
    ({"sigma": "nan"}, r"'sigma' must be a number"),
    ({"system": "cartpole"}, r"'system' = 'cartpole' is not allowed; use one of 'tanh', 'pendulum'"),
    ({"profile": "paper"}, r"--profile"),
])
def test_bad_cli_values_are_refused(overrides, match):
    with pytest.raises(ParameterError, match=match):
        registry.resolve(NB, "default", overrides)


@pytest.mark.parametrize("kwargs,match", [
    ({"horizon": 3.0}, r"'horizon' must be an int"),
    ({"horizon": True}, r"'horizon' must be an int"),
    ({"sigma": "0.5"}, r"'sigma' must be a float"),
    ({"n_state": 9}, r"'n_state' = 9 is out of range"),
    ({"system": 3}, r"'system' must be a string"),
])
def test_bad_python_values_are_refused(kwargs, match):
    """The dataclass itself validates, so plain papermill runs are checked too."""
    with pytest.raises(ParameterError, match=match):
        Theorem1Params(**kwargs)


def test_int_is_accepted_for_float_and_stored_as_float():
    assert Theorem1Params(sigma=1).sigma == 1.0
    assert isinstance(Theorem1Params(sigma=1).sigma, float)


def test_unknown_profile_and_notebook():
    with pytest.raises(ParameterError, match="unknown profile 'fast'"):
        registry.resolve(NB, "fast")
    with pytest.raises(ParameterError, match="unknown notebook 'nope'; available: 01_"):
        registry.resolve("nope")


def test_profiles_resolve_and_validate():
    for name, nb in registry.NOTEBOOKS.items():
        for profile in ("smoke", "default", "paper"):
            p = registry.resolve(name, profile)
            assert p.profile == profile
            for k, v in nb.profiles.get(profile, {}).items():
                assert getattr(p, k) == v


def test_tuple_parameters_parse_and_validate():
    from dataclasses import dataclass

    from vgh_lib.harness.params import NotebookParams, spec

    @dataclass(frozen=True)
    class P(NotebookParams):
        temps: tuple[float, ...] = spec((0.5, 1.0), lo=0.0, hi=5.0)

    assert P.parse_value("temps", "0.25,2") == (0.25, 2.0)
    assert P.parse_value("temps", "[1, 3]") == (1.0, 3.0)
    assert P(temps=[1, 2]).temps == (1.0, 2.0)
    with pytest.raises(ParameterError, match="'temps' = 7.0 is out of range"):
        P(temps=(1.0, 7.0))
    with pytest.raises(ParameterError, match="must not be empty"):
        P(temps=())


def test_cli_refuses_bad_parameter_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["run", NB, "-p", "horizon", "-3", "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "horizon" in err and "[1, 50]" in err
    assert not out.exists()


def test_cli_list_shows_every_parameter(capsys):
    assert cli.main(["list"]) == 0
    text = capsys.readouterr().out
    for name in Theorem1Params.names():
        assert name in text
    assert "default 500000" in text


def test_python_dash_m_is_the_same_command():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "vgh_lib", "run", NB, "-p", "sigma", "2"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "'sigma' = 2.0 is out of range" in out.stderr


@pytest.mark.parametrize("overrides,match", [
    ({"confirmation_seeds": "0,1"}, r"'confirmation_seeds'.*must not contain the pilot"),
    ({"grpo_seeds": "0"}, r"'grpo_seeds' needs at least 2"),
    ({"seeds": "0"}, r"'grpo_seeds' needs at least 2"),   # the old name, read as today's
    ({"checkpoint_grid": "100,4000"}, r"'checkpoint_grid' has steps beyond"),
])
def test_value_impact_design_is_checked(overrides, match):
    with pytest.raises(ParameterError, match=match):
        registry.resolve("05_value_impact", "default", overrides)


def test_confirmation_trajectories_use_the_committed_grid():
    p = registry.resolve("05_value_impact")
    cfg = p.confirmation_config(p.confirmation_seeds[0])
    assert cfg.seed == p.confirmation_seeds[0] != p.seed
    assert cfg.steps() == [0, *designs.PILOT_CHOSEN["checkpoint_grid"]]
    assert cfg.key() != p.pretrain_config().key()


# ------------------------------------------------------------------ the GRPO budget mixins
def test_grpo_budget_builds_its_run_from_every_budget_field():
    from vgh_lib.experiments.grpo_budget import GRPOBudget
    from vgh_lib.experiments.what_predicts_rl_gain import PredictorParams

    assert issubclass(PredictorParams, GRPOBudget)
    p = PredictorParams(grpo_steps=7, grpo_prompts=5, group_size=3, temperature=0.7)
    cfg = p.grpo_config(lr=2e-3, seed=11, optimizer="sgd")
    assert (cfg.steps, cfg.prompts_per_step, cfg.group_size, cfg.temperature) == (7, 5, 3, 0.7)
    assert (cfg.lr, cfg.seed, cfg.optimizer) == (2e-3, 11, "sgd")
    assert p.grpo_config(lr=1e-3, seed=0, steps=2).steps == 2
    with pytest.raises(ParameterError, match="grpo_steps"):
        PredictorParams(grpo_steps=0)   # the mixin's fields are validated like the study's own


def test_lm_grpo_budget_is_the_same_in_the_params_and_in_the_jobs_design():
    from vgh_lib.experiments.real_lm_impact import RealLMImpactParams
    from vgh_lib.experiments.real_lm_task_suite import TaskSuiteParams

    for cls in (RealLMImpactParams, TaskSuiteParams):
        p = cls(grpo_steps=9, grpo_prompts=4, group_size=3, train_layers=1, probe_every=2)
        cfg = p.design().grpo_config(lr=1e-4, seed=5)
        assert cfg == p.grpo_config(lr=1e-4, seed=5)
        assert (cfg.steps, cfg.prompts_per_step, cfg.group_size, cfg.train_layers, cfg.probe_every,
                cfg.lr, cfg.seed) == (9, 4, 3, 1, 2, 1e-4, 5)


def test_grpo_configurations_are_built_only_by_the_budget_mixins():
    """One implementation of the GRPO budget: no study builds a GRPO configuration itself."""
    import ast

    from vgh_lib.paths import PACKAGE_DIR

    builders = []
    for path in sorted((PACKAGE_DIR / "experiments").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) \
                    in ("GRPOConfig", "LMGRPOConfig"):
                builders.append(path.name)
    assert builders == ["grpo_budget.py", "grpo_budget.py"]


# ------------------------------------------------------------------ one vocabulary
def test_old_parameter_names_are_read_as_todays():
    from vgh_lib.harness.params import canonical_names

    old = registry.resolve("08_real_lm_impact", "default", {"seeds": "4,5", "lr": "1e-4"})
    new = registry.resolve("08_real_lm_impact", "default", {"grpo_seeds": "4,5", "grpo_lr": "1e-4"})
    assert old == new and new.grpo_seeds == (4, 5) and new.grpo_lr == 1e-4
    with pytest.raises(ParameterError, match="'seeds' is the old name of 'grpo_seeds'"):
        registry.resolve("08_real_lm_impact", "default", {"seeds": "4,5", "grpo_seeds": "4,5"})
    # a study without today's name keeps refusing the old one under its own name
    with pytest.raises(ParameterError, match="unknown parameter.*'seeds'"):
        registry.resolve(NB, "default", {"seeds": "1,2"})
    assert canonical_names({"seeds": [1], "lr": 0.1, "n": 3}) == {"grpo_seeds": [1], "grpo_lr": 0.1, "n": 3}


def test_papermill_may_inject_an_old_name():
    from vgh_lib.experiments.real_lm_impact import RealLMImpactParams

    namespace = {**RealLMImpactParams().as_dict(), "seeds": [7, 8]}   # papermill -p seeds [7, 8]
    assert RealLMImpactParams.from_namespace(namespace).grpo_seeds == (7, 8)


def test_no_study_declares_an_old_name():
    from vgh_lib.harness.params import ALIASES

    for spec_ in registry.NOTEBOOKS.values():
        assert not set(ALIASES) & set(spec_.params.names()), spec_.name


def test_committed_records_read_under_todays_names(tmp_path):
    import json

    from vgh_lib.harness.preregistration import read_record

    path = tmp_path / "record.json"
    path.write_text(json.dumps({"params": {"seeds": [1, 2], "lr": 3e-4, "k": 8}, "seeds": [1, 2]}))
    record = read_record(path)
    assert record["params"] == {"grpo_seeds": [1, 2], "grpo_lr": 3e-4, "k": 8}
    assert record["seeds"] == [1, 2]          # a record's own fields keep their names
    assert read_record(tmp_path / "missing.json") is None
