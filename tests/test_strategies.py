"""Strategies are data: positions, the built-in YAML files as plans, a user's own strategy file,
the errors for parts that do not fit, and a report that handles any strategy name."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pytest
from helpers import composed

from prune_exp.app.preflight import check_job
from prune_exp.app.run import to_run_config
from prune_exp.config import STRATEGY_KEYS, ConfigError, RetrainConfig
from prune_exp.config.positions import parse_position
from prune_exp.report.collect import setting_columns
from prune_exp.report.styles import PALETTE, StrategyStyles
from prune_exp.report.tables import pairs
from prune_exp.retrain.strategies import builtin_strategies, plan_round, strategy_config

SCHEMA_HEADER = "defaults:\n  - /schema_retrain_default@_here_\n  - _self_\n"


@pytest.mark.parametrize(
    ("text", "step"),  # T = 10 epochs, t = 3, 4 steps per epoch
    [("0", 0), ("T", 40), ("T-t", 28), ("3ep", 12), ("3", 12), ("500it", 500), ("T - 2ep + 5it", 37), ("t+t", 24)],
)
def test_a_position_resolves_to_a_step_of_the_dense_run(text: str, step: int) -> None:
    assert parse_position(text).step(10, 3, 4) == step


@pytest.mark.parametrize("text", ["", "x", "5 5", "T+", "3epochs", "-", "T--t", "1.5ep"])
def test_a_malformed_position_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="position"):
        parse_position(text)


@pytest.mark.parametrize(
    ("strategy", "epochs", "weights", "rewind_step", "lr", "lr_start_step"),
    [  # T = 10 epochs of 4 steps, t = 3: the table in retrain/strategies.py
        ("finetune", 3, "current", None, "constant", 0),
        ("weight_rewind", 3, "rewind", 28, "replay", 28),
        ("lr_rewind", 3, "current", None, "replay", 28),
        ("lottery", 10, "rewind", 0, "replay", 0),
        ("reinit", 10, "reinit", None, "replay", 0),
        ("none", 0, "current", None, "constant", 0),
    ],
)
def test_the_builtin_strategy_files_give_the_papers_plans(
    strategy: str, epochs: int, weights: str, rewind_step: int | None, lr: str, lr_start_step: int
) -> None:
    p = plan_round(strategy_config(strategy, budget=3), 10, 4)
    assert (p.strategy, p.epochs, p.weights, p.rewind_step, p.lr, p.lr_start_step) == (
        strategy,
        epochs,
        weights,
        rewind_step,
        lr,
        lr_start_step,
    )
    assert p.dense_epochs_needed(4) == ({rewind_step // 4} if rewind_step is not None else set())


def test_a_rewind_point_inside_an_epoch_reads_the_init_to_replay_from() -> None:
    p = plan_round(strategy_config("weight_rewind", rewind_to="5it", lr_from="5it", duration="full"), 10, 4)
    assert (p.rewind_step, p.lr_start_step, p.epochs) == (5, 5, 10)
    assert p.dense_epochs_needed(4) == {0}  # job/dense.replay_dense starts from epoch 0
    assert plan_round(strategy_config("lottery", rewind_to="8it", lr_from="8it"), 10, 4).dense_epochs_needed(4) == {2}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"weights": "rewind"},
            r"retrain\.rewind_to=None is not allowed; allowed: a position .*weights=rewind needs it",
        ),
        (
            {"rewind_to": "T-t"},
            r"retrain\.rewind_to='T-t' is not allowed; allowed: null unless retrain\.weights=rewind",
        ),
        ({"lr": "replay"}, r"retrain\.lr_from=None .*retrain\.lr=replay needs it"),
        ({"lr_from": "0"}, r"retrain\.lr_from='0' .*null unless retrain\.lr=replay"),
        ({"weights": "theta0"}, r"retrain\.weights='theta0' .*one of current, rewind, reinit"),
        ({"lr": "exponential"}, r"retrain\.lr='exponential' .*one of constant, replay, scaled, cosine, linear"),
        # the LR vocabulary: a shape without its anchor, keys its shape does not have, bad values
        ({"lr": "cosine"}, r"retrain\.lr_peak=None .*one of max, min, last or a number: retrain\.lr=cosine needs it"),
        ({"lr": "cosine", "lr_peak": "max"}, r"retrain\.lr_end=None .*retrain\.lr=cosine needs it"),
        ({"lr": "scaled"}, r"retrain\.lr_peak=None .*retrain\.lr=scaled needs it"),
        ({"lr": "replay", "lr_from": "0", "lr_peak": "max"}, r"retrain\.lr_peak='max' .*null unless retrain\.lr"),
        ({"lr": "linear", "lr_peak": 0.1, "lr_end": "median"}, r"retrain\.lr_end='median' .*one of max, min, last"),
        ({"lr": "linear", "lr_peak": -0.1}, r"retrain\.lr_peak=-0\.1 .*a number > 0"),
        ({"lr": "linear", "lr_peak": 0}, r"retrain\.lr_peak=0 .*one of max, min, last or a number > 0"),
        ({"lr_end": 0.0}, r"retrain\.lr_end=0\.0 .*null unless retrain\.lr is one of cosine, linear"),
        ({"lr_warmup": 1.0}, r"retrain\.lr_warmup=1\.0 .*a number in \[0\.0, 1\.0\)"),
        ({"lr_warmup": -0.1}, r"retrain\.lr_warmup=-0\.1 .*a number in \[0\.0, 1\.0\)"),
        ({"lr_warmup_shape": "exp"}, r"retrain\.lr_warmup_shape='exp' .*one of linear, cosine"),
        ({"lr": "linear", "lr_rule": {"norms": "all"}}, r"retrain\.lr_rule=.* a mapping with a _target_"),
        (
            {"lr": "linear", "lr_peak": "max", "lr_rule": {"_target_": "prune_exp.retrain.rules.ALLR"}},
            r"retrain\.lr_peak='max' .*null with a retrain\.lr_rule",
        ),
        (
            {"lr": "replay", "lr_from": "0", "lr_rule": {"_target_": "prune_exp.retrain.rules.ALLR"}},
            r"retrain\.lr_rule=.*null unless retrain\.lr is one of constant, scaled, cosine, linear",
        ),
        ({"duration": "T"}, r"retrain\.duration='T' .*one of budget, full, none"),
        ({"lr": "replay", "lr_from": "T+1"}, r"retrain\.lr_from='T\+1' .*a position in \[0, T\] \(dense\.epochs=10\)"),
        ({"lr": "replay", "lr_from": "soon"}, r"retrain\.lr_from='soon' .*a sum of T, t, N"),
        (
            {"lr": "replay", "lr_from": "T-t", "budget": 11},
            r"retrain\.budget=11 .*1\.\.10 for mine: its retrain\.lr_from",
        ),
        ({"lr": "replay", "lr_from": "41it"}, r"retrain\.lr_from=41it .*steps 0\.\.40 \(T=10 epochs of 4 steps\)"),
        ({"strategy": " "}, r"retrain\.strategy=' ' .*a name"),
    ],
)
def test_parts_that_do_not_fit_are_refused_naming_the_key(values: dict, message: str) -> None:
    rt = RetrainConfig(**{"strategy": "mine", **values})
    with pytest.raises(ConfigError, match=message):
        plan_round(rt, 10, 4)


def test_an_unknown_strategy_name_lists_the_builtins() -> None:
    with pytest.raises(ConfigError, match="allowed: " + ", ".join(builtin_strategies())):
        strategy_config("finetuning")


def user_strategies(root: Path) -> Path:
    """A user's config dir with the issue's three examples, each one YAML file."""
    (root / "retrain").mkdir(parents=True)
    examples = {
        "wr_constant": "weights: rewind\nrewind_to: T-t\nshort: WRc\n",  # WR's weights, a constant LR
        "lrr_full": "lr: replay\nlr_from: 0\nduration: full\n",  # LRR replaying the whole schedule
        "late_reset": "weights: rewind\nrewind_to: 500it\nlr: replay\nlr_from: 500it\nduration: full\n",
    }
    for name, body in examples.items():
        (root / "retrain" / f"{name}.yaml").write_text(f"{SCHEMA_HEADER}strategy: {name}\n{body}")
    return root


@pytest.mark.parametrize(
    ("name", "plan"),
    [
        ("wr_constant", (45, "rewind", 15 * 6, "constant", 0)),
        ("lrr_full", (60, "current", None, "replay", 0)),
        ("late_reset", (60, "rewind", 500, "replay", 500)),
    ],
)
def test_a_users_strategy_is_one_yaml_file_in_their_config_dir(tmp_path: Path, name: str, plan: tuple) -> None:
    conf = user_strategies(tmp_path / "conf")
    with composed([f"hydra.searchpath=[file://{conf}]", f"retrain={name}"]) as cfg:
        rc = to_run_config(cfg, resolve_paths=False)
        check_job(cfg)  # the preflight's checks, with the data loaded
    assert rc.retrain.strategy == name
    steps = 6  # per epoch; T = 60 epochs, t = 45
    if name == "late_reset":  # 500it does not fit in 60 epochs of 6 steps: refused, naming the key
        with pytest.raises(ConfigError, match=r"retrain\.rewind_to=500it .*steps 0\.\.360"):
            plan_round(rc.retrain, rc.dense.epochs, steps)
        steps = 50
    p = plan_round(rc.retrain, rc.dense.epochs, steps)
    assert (p.epochs, p.weights, p.rewind_step, p.lr, p.lr_start_step) == plan


def test_the_preflight_checks_an_iteration_position_against_the_data(tmp_path: Path) -> None:
    conf = user_strategies(tmp_path / "conf")
    # the synthetic data has 29 steps an epoch: 2 epochs are 58 steps, and 500it lies past them
    with composed(
        [f"hydra.searchpath=[file://{conf}]", "retrain=late_reset", "dense.epochs=2", "optim.schedule.milestones=[1]"]
    ) as cfg:
        with pytest.raises(
            ConfigError,
            match=r"retrain\.rewind_to=500it .*steps 0\.\.58 \(T=2 epochs of 29 steps\), but it is step 500",
        ):
            check_job(cfg)


# ------------------------------------------------------------------ the report, for any name
def records(strategies: list[tuple[str, dict]]) -> pd.DataFrame:
    """One dense and one pruned row per strategy, with the job's retrain config flattened."""
    rows = []
    for name, style in strategies:
        retrain = {f"retrain.{k}": v for k, v in {**asdict(RetrainConfig(strategy=name)), **style}.items()}
        rows += [{"strategy": name, "round": r, "seed": 0, **retrain} for r in (0, 1)]
    return pd.DataFrame(rows)


def test_styles_come_from_the_strategy_configs_or_the_palette() -> None:
    df = records([("mine", {}), ("finetune", {"short": "FT", "color": "tab:blue", "label": "fine-tuning"}), ("x", {})])
    s = StrategyStyles.of(df)
    assert s.names == ("mine", "finetune", "x")  # the sweep's order, not a built-in list
    assert s.label == {"mine": "mine", "finetune": "fine-tuning", "x": "x"}
    assert s.short == {"mine": "mine", "finetune": "FT", "x": "x"}
    assert s.color == {"mine": PALETTE[1], "finetune": "tab:blue", "x": PALETTE[2]}  # blue is taken
    assert s.ordered({"x", "mine"}) == ["mine", "x"]


def test_what_a_strategy_is_never_splits_a_sweep_into_settings() -> None:
    df = records([("a", {"weights": "rewind", "rewind_to": "T-t"}), ("b", {"lr": "replay", "lr_from": "0"})])
    df["optim.lr"] = 0.1
    assert setting_columns(df) == []
    assert {f"retrain.{k}" for k in STRATEGY_KEYS} <= set(df.columns)


def test_paired_differences_are_every_pair_or_each_against_the_baseline() -> None:
    order = ["finetune", "weight_rewind", "lr_rewind", "mine"]
    assert pairs(order[:3]) == [
        ("weight_rewind", "finetune"),
        ("lr_rewind", "finetune"),
        ("lr_rewind", "weight_rewind"),
    ]
    assert pairs(order, "finetune") == [("weight_rewind", "finetune"), ("lr_rewind", "finetune"), ("mine", "finetune")]
    assert pairs(["a", "b"], "finetune") == [("b", "a")]  # no such baseline in the sweep: every pair


def test_every_builtin_strategy_is_a_file_over_the_schema() -> None:
    assert builtin_strategies() == [
        *("allr", "clr", "finetune", "llr", "lottery", "lr_rewind", "none", "reinit", "scyc", "slr"),
        "weight_rewind",
    ]
    for name in builtin_strategies():
        rt = strategy_config(name)
        assert rt.strategy == name and rt.label and rt.short and rt.color


def test_the_reports_names_for_a_strategy_are_not_part_of_a_jobs_fingerprint() -> None:
    from prune_exp.app.run import config_fingerprint

    def fingerprint(*overrides: str) -> str:
        with composed(["retrain=weight_rewind", *overrides]) as cfg:
            return config_fingerprint(cfg)

    plain = fingerprint()
    assert fingerprint("retrain.label=WR", "retrain.short=W", "retrain.color=black") == plain
    assert fingerprint("retrain.lr=constant", "retrain.lr_from=null") != plain
    assert fingerprint("retrain.rewind_to=500it") != plain


# Each built-in strategy's fingerprint in the main job (experiment=compare), as the code before
# the LR vocabulary (retrain.lr_peak, lr_end, lr_warmup, lr_warmup_shape, lr_rule) computed it.
FINGERPRINTS_BEFORE_THE_LR_VOCABULARY = {
    "finetune": "9e90daa30daba08a",
    "lottery": "6c957e6cac144f7d",
    "lr_rewind": "8b47f308c92d74da",
    "none": "c5c4702895b2f075",
    "reinit": "b7c0f7ca933e606f",
    "weight_rewind": "4a04978c0f455218",
}


@pytest.mark.parametrize("strategy", sorted(FINGERPRINTS_BEFORE_THE_LR_VOCABULARY))
def test_a_strategy_without_the_new_lr_keys_keeps_its_fingerprint(strategy: str) -> None:
    """Job dirs and job-cache entries from before the LR vocabulary stay valid."""
    from prune_exp.app.run import config_fingerprint

    with composed([f"retrain={strategy}", "experiment=compare"]) as cfg:
        assert config_fingerprint(cfg) == FINGERPRINTS_BEFORE_THE_LR_VOCABULARY[strategy]
    with composed([f"retrain={strategy}", "experiment=compare", "retrain.lr_warmup=0.1"]) as cfg:
        assert config_fingerprint(cfg) != FINGERPRINTS_BEFORE_THE_LR_VOCABULARY[strategy]


def test_the_builtin_lr_rules_import_and_are_the_ones_the_builtin_strategies_use() -> None:
    from prune_exp.config.retrain import BUILTIN_RULES
    from prune_exp.config.targets import locate_error

    assert all(locate_error(target) is None for target in BUILTIN_RULES)
    used = {strategy_config(name).lr_rule["_target_"] for name in builtin_strategies() if strategy_config(name).lr_rule}
    assert used == set(BUILTIN_RULES)
