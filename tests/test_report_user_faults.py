"""The report's faults a new user hits (issue 22, section 4), one row each: the fault, the one
line it must end in, the exit code, and the files that must be unchanged, byte for byte.

- two strategy configs under one name, or two names under one short name: refused by the
  sweep's preflight (before any job runs) and by the report (before it writes anything);
- a damaged multirun.yaml, an unknown --baseline: never "all jobs done", never exit 0;
- a dir that is not a sweep, a user's file in the place of a report file: refused, untouched;
- a full disk while the report writes: one line naming the file, a non-zero exit (also for the
  ``prune-exp -m`` sweep whose Hydra callback writes the report), and no stale summary.md.

Hand-written job dirs where the records are enough (report_helpers.py's), small real sweeps
(debug=fast) otherwise."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml
from helpers import REPO, composed, run_in_process, snapshot, tiny_disk
from report_helpers import job_rows, write_job

from prune_exp.app.preflight import check_strategy_names
from prune_exp.app.run import to_run_config
from prune_exp.errors import ConfigError
from prune_exp.report.cli import main
from prune_exp.report.files import MANIFEST_FILE, REPORT_FILES, SUMMARY_FILE
from prune_exp.retrain.strategies import builtin_strategies, strategy_config
from prune_exp.store.files import MULTIRUN_FILE

ALLOWED_FIX = (
    "allowed: one strategy config per name: give one of them its own `strategy:` name (retrain.strategy), "
    "and its own `short:`"
)
SHORT_FIX = (
    "(retrain.short; a strategy without one goes by its name): the report would merge their paired differences; "
    "allowed: a short name of its own for each strategy"
)


def report(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """``prune-exp-report ARGS`` in this process: (exit code, stdout, stderr)."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:
        code = int(e.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------ one name, two strategies
def hand_sweep(root: Path, jobs: list[tuple[str, dict, int]]) -> Path:
    """A finished sweep dir of hand-written jobs, each (strategy name, changes to its retrain
    config, seed); the config is the built-in strategy's of that name (else finetune's)."""
    sweep = root / "sweep"
    sweep.mkdir()
    for i, (name, changes, seed) in enumerate(jobs):
        base = name if name in builtin_strategies() else "finetune"
        retrain = {**asdict(strategy_config(base)), "strategy": name, **changes}
        rows = [{**r, "budget": retrain["budget"]} for r in job_rows(name, seed, 2)]
        write_job(sweep / str(i), [f"retrain={name}", f"seed={seed}", f"+n={i}"], rows, "done")
        (sweep / str(i) / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "retrain": retrain}))
    return sweep


LRR_LR_FROM_0 = {"lr": "replay", "lr_from": "0"}
REFUSED = [
    (  # the issue's: a user file that changes lr_from but keeps `strategy: lr_rewind`, both at seed 0
        "one name, two lr_from",
        [("finetune", {}, 0), ("lr_rewind", {}, 0), ("lr_rewind", {"lr_from": "0"}, 0)],
        "two jobs of the sweep give the strategy name 'lr_rewind' to different strategies: job 1 has "
        f"retrain.lr_from=T-t, job 2 has retrain.lr_from=0; {ALLOWED_FIX}",
    ),
    (
        "one name, two weights and lr",
        [("finetune", {}, 0), ("finetune", {"weights": "rewind", "rewind_to": "T-t", **LRR_LR_FROM_0}, 1)],
        "two jobs of the sweep give the strategy name 'finetune' to different strategies: job 0 has "
        "retrain.weights=current, retrain.lr=constant, job 1 has retrain.weights=rewind, retrain.lr=replay; "
        f"{ALLOWED_FIX}",
    ),
    (  # the issue's: `strategy:` renamed, `short: LRR` kept
        "two names, one short",
        [("finetune", {}, 0), ("lr_rewind", {}, 0), ("my_lrr", {"short": "LRR", **LRR_LR_FROM_0}, 0)],
        f"the strategies 'lr_rewind' and 'my_lrr' have one short name 'LRR' {SHORT_FIX}",
    ),
    (
        "a name that is another's short",
        [("finetune", {}, 0), ("FT", {"short": None, **LRR_LR_FROM_0}, 0)],
        f"the strategies 'finetune' and 'FT' have one short name 'FT' {SHORT_FIX}",
    ),
]


@pytest.mark.parametrize(("fault", "jobs", "line"), REFUSED, ids=[r[0] for r in REFUSED])
def test_the_report_refuses_one_name_for_two_strategies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fault: str, jobs: list, line: str
) -> None:
    sweep = hand_sweep(tmp_path, jobs)
    before = snapshot(sweep)
    code, out, err = report(capsys, sweep, "--no-plots")
    assert (code, out, err) == (2, "", f"prune-exp-report: error: {line}\n")
    assert snapshot(sweep) == before  # nothing written: no summary.md, no results.csv


ALLOWED = [  # what may vary between the jobs of one strategy: each is reported, exit 0
    ("seeds, labels and colors", [("finetune", {}, 0), ("finetune", {"label": "mine", "color": "black"}, 1)], 1),
    ("a budget sweep", [("finetune", {"budget": 2}, 0), ("finetune", {"budget": 4}, 0)], 1),
    ("finetune_lr: a setting each", [("finetune", {"finetune_lr": 0.01}, 0), ("finetune", {"finetune_lr": 0.1}, 0)], 2),
    (  # the same values, one of them through an interpolation
        "lr_from spelled as an interpolation",
        [("weight_rewind", {}, 0), ("weight_rewind", {"lr_from": "${retrain.rewind_to}"}, 1)],
        1,
    ),
]


@pytest.mark.parametrize(("case", "jobs", "settings"), ALLOWED, ids=[r[0] for r in ALLOWED])
def test_what_may_vary_within_one_strategy_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, jobs: list, settings: int
) -> None:
    sweep = hand_sweep(tmp_path, jobs)
    code, out, _ = report(capsys, sweep, "--no-plots")
    assert code == 0 and out.rstrip().endswith(f"all {len(jobs)} jobs done")
    summary = (sweep / SUMMARY_FILE).read_text()
    assert summary.count("## Setting: ") == (settings if settings > 1 else 0)


def user_conf(root: Path, base: str = "lr_rewind", **files: str) -> Path:
    """A user's config dir with ``retrain/<name>.yaml`` files, each conf/retrain/<base>.yaml with
    one line replaced: ``my_lrr="strategy: my_lrr"`` (as the issue made them, with sed)."""
    original = (REPO / "conf" / "retrain" / f"{base}.yaml").read_text()
    (root / "retrain").mkdir(parents=True)
    for name, line in files.items():
        text = re.sub(rf"^{line.split(':')[0]}:.*$", line, original, flags=re.M)
        assert text != original
        (root / "retrain" / f"{name}.yaml").write_text(text)
    return root


def job_configs(conf: Path, jobs: list[list[str]]) -> list:
    """Each job's RunConfig as the preflight has it."""
    configs = []
    for overrides in jobs:
        with composed([f"hydra.searchpath=[file://{conf}]", "debug=fast", *overrides]) as cfg:
            configs.append(to_run_config(cfg, resolve_paths=False, overrides=overrides))
    return configs


PREFLIGHT_REFUSED = [
    (
        "one name, two lr_from",
        {"my_lrr": "lr_from: 0"},
        [["retrain=lr_rewind"], ["retrain=my_lrr"]],
        "two jobs of the sweep give the strategy name 'lr_rewind' to different strategies: job 0 has "
        f"retrain.lr_from=T-t, job 1 has retrain.lr_from=0; {ALLOWED_FIX}",
    ),
    (
        "two names, one short",
        {"my_lrr": "strategy: my_lrr"},
        [["retrain=finetune"], ["retrain=lr_rewind"], ["retrain=my_lrr"]],
        f"the strategies 'lr_rewind' and 'my_lrr' have one short name 'LRR' {SHORT_FIX}",
    ),
]


@pytest.mark.parametrize(("fault", "files", "jobs", "line"), PREFLIGHT_REFUSED, ids=[r[0] for r in PREFLIGHT_REFUSED])
def test_the_preflight_refuses_one_name_for_two_strategies(
    tmp_path: Path, fault: str, files: dict, jobs: list, line: str
) -> None:
    with pytest.raises(ConfigError) as e:
        check_strategy_names(job_configs(user_conf(tmp_path / "conf", **files), jobs))
    assert str(e.value) == line


def test_the_preflight_allows_what_may_vary_within_one_strategy(tmp_path: Path) -> None:
    # the built-in weight_rewind's values, lr_from spelled as an interpolation
    conf = user_conf(tmp_path / "conf", "weight_rewind", same_wr="lr_from: ${retrain.rewind_to}")
    jobs = [
        ["retrain=finetune", "retrain.budget=1"],
        ["retrain=finetune", "retrain.budget=2", "retrain.label=mine", "retrain.color=black", "seed=1"],
        ["retrain=finetune", "retrain.finetune_lr=0.01"],
        ["retrain=finetune", "prune.schedule=gradual"],  # an arm of its own: 'finetune (gradual)', GMP-FT
        ["retrain=weight_rewind"],
        ["retrain=same_wr", "seed=1"],
    ]
    check_strategy_names(job_configs(conf, jobs))


@pytest.mark.slow
def test_a_sweep_of_one_name_for_two_strategies_stops_before_any_job(tmp_path: Path) -> None:
    conf = user_conf(tmp_path / "my_conf", my_lrr="lr_from: 0")  # keeps `strategy: lr_rewind`
    sweep = tmp_path / "sweep"
    code, err = run_in_process(
        tmp_path,
        ["-m", "--config-dir", str(conf), "debug=fast", "retrain=lr_rewind,my_lrr", f"hydra.sweep.dir={sweep}"],
    )
    assert code == 1
    assert err.rstrip().splitlines()[-1] == (
        "prune-exp: config error: two jobs of the sweep give the strategy name 'lr_rewind' to different strategies: "
        f"job 0 has retrain.lr_from=T-t, job 1 has retrain.lr_from=0; {ALLOWED_FIX}"
    )
    assert not sweep.exists() and not (tmp_path / "outputs").exists()  # no job ran, nothing written


# ------------------------------------------------------------------ real sweeps
@pytest.fixture(scope="module")
def real_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished real sweep of 3 jobs (debug=fast: FT, LRR, WR), reported by its Hydra callback.
    Tests that change it work on a copy."""
    root = tmp_path_factory.mktemp("real_sweep")
    sweep = root / "sweep"
    args = ["-m", "debug=fast", "retrain=finetune,lr_rewind,weight_rewind", f"hydra.sweep.dir={sweep}"]
    code, err = run_in_process(root, args)
    assert code == 0, err[-3000:]
    assert (sweep / MANIFEST_FILE).is_file() and all((sweep / n).is_file() for n in REPORT_FILES if "budget" not in n)
    return sweep


def copy_of(sweep: Path, where: Path) -> Path:
    return Path(shutil.copytree(sweep, where / "sweep"))


def jobs_of(sweep: Path) -> dict[str, bytes]:
    """The bytes of every file of the sweep's job dirs (what the report reads, never writes)."""
    return {k: v for k, v in snapshot(sweep).items() if "/" in k}


def cut_points() -> list[str]:
    """Where to cut multirun.yaml: at a line just before Hydra's overrides, and a spread of bytes."""
    return ["before hydra.overrides", *(f"{p}%" for p in (3, 20, 35, 45, 60, 80, 97))]


@pytest.mark.slow
@pytest.mark.parametrize("cut", cut_points())
def test_a_truncated_multirun_yaml_never_says_every_job_is_done(
    real_sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], cut: str
) -> None:
    sweep = copy_of(real_sweep, tmp_path)
    text = (sweep / MULTIRUN_FILE).read_bytes()
    at = text.index(b"\n  overrides:\n") + 1 if cut.startswith("before") else len(text) * int(cut[:-1]) // 100
    (sweep / MULTIRUN_FILE).write_bytes(text[:at])
    shutil.rmtree(sweep / "2")  # a job the sweep meant to run is gone
    before = jobs_of(sweep)
    code, out, _ = report(capsys, sweep, "--no-plots")
    last = out.rstrip().splitlines()[-1]
    assert code == 1
    unknown = f"prune-exp-report: exit 1: cannot tell which jobs the sweep meant to run: {sweep}/{MULTIRUN_FILE}: "
    missing = "prune-exp-report: exit 1: 1 of 3 jobs not done (1 missing); see the Jobs table"
    assert last == missing or (last.startswith(unknown) and last.endswith("; 2 job dirs found, see the Jobs table"))
    if cut.startswith("before"):
        assert last == f"{unknown}not the whole of Hydra's file (no hydra.overrides.task); 2 job dirs found, " + (
            "see the Jobs table"
        )
        assert (
            "Which jobs the sweep meant to run is unknown (multirun.yaml: not the whole"
            in (sweep / SUMMARY_FILE).read_text()
        )
    assert jobs_of(sweep) == before


@pytest.mark.slow
def test_an_unknown_baseline_is_refused_naming_the_sweeps_strategies(
    real_sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = copy_of(real_sweep, tmp_path)
    before = snapshot(sweep)
    for given in ("nope", None):  # --baseline alone is finetune, which the sweep has
        args = [sweep, "--no-plots", "--baseline", *([given] if given else [])]
        code, out, err = report(capsys, *args)
        if given:
            line = "--baseline 'nope': the sweep has no such strategy; allowed: finetune, lr_rewind, weight_rewind"
            assert (code, out, err) == (2, "", f"prune-exp-report: error: {line}\n")
            assert snapshot(sweep) == before
        else:
            assert code == 0 and "| LRR − FT" in out and "WR − LRR" not in out


def test_a_dir_that_is_not_a_sweep_is_refused_and_left_as_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = tmp_path / "notes"
    (mine / "data").mkdir(parents=True)
    (mine / SUMMARY_FILE).write_bytes(b"# My notes\n\nnot a report\n")
    (mine / "data" / "results.csv").write_bytes(b"a,b\n1,2\n")
    before = snapshot(mine)
    code, out, err = report(capsys, mine)
    assert (code, out) == (2, "")
    assert err == (
        f"prune-exp-report: error: {mine} is not a sweep dir: it has no multirun.yaml and no job dir "
        "(<job>/.hydra/overrides.yaml); allowed: the dir of a multirun (its hydra.sweep.dir, e.g. "
        "outputs/<name>/multiruns/<time>)\n"
    )
    assert snapshot(mine) == before and sorted(p.name for p in mine.iterdir()) == ["data", SUMMARY_FILE]


@pytest.mark.slow
@pytest.mark.parametrize("name", [SUMMARY_FILE, "results.csv", "layer_sparsity.svg", "accuracy_vs_budget.png"])
def test_a_users_file_in_the_place_of_a_report_file_is_refused_and_left_as_it_is(
    real_sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    sweep = copy_of(real_sweep, tmp_path)
    (sweep / name).write_bytes(b"the user's own file\n")  # in the place of the report's, or a new one
    before = snapshot(sweep)
    code, out, err = report(capsys, sweep)
    assert (code, out) == (2, "")
    assert err == (
        f"prune-exp-report: error: {sweep / name} was not written by prune-exp-report (or was changed since), and "
        f"the report writes a file of that name; allowed: move it out of {sweep} (it is left as it is), then report "
        "again\n"
    )
    assert snapshot(sweep) == before


def test_a_sweep_dir_with_the_users_summary_and_no_report_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = hand_sweep(tmp_path, [("finetune", {}, 0), ("lr_rewind", {}, 0)])
    (sweep / SUMMARY_FILE).write_bytes(b"# What I found\n")
    before = snapshot(sweep)
    code, _, err = report(capsys, sweep, "--no-plots")
    assert code == 2 and err.startswith(f"prune-exp-report: error: {sweep / SUMMARY_FILE} was not written by")
    assert snapshot(sweep) == before


@pytest.mark.slow
def test_a_sweep_reported_before_the_manifest_existed_is_reported_again(
    real_sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = copy_of(real_sweep, tmp_path)
    (sweep / MANIFEST_FILE).unlink()  # as the report wrote it before it kept one
    (sweep / SUMMARY_FILE).write_text((sweep / SUMMARY_FILE).read_text().replace("3 jobs: 3 done.", "old"))
    code, out, _ = report(capsys, sweep)
    assert code == 0 and out.rstrip().endswith("all 3 jobs done")
    assert "3 jobs: 3 done." in (sweep / SUMMARY_FILE).read_text() and (sweep / MANIFEST_FILE).is_file()


# ------------------------------------------------------------------ a full disk
def fill(disk: Path, leave: int = 0) -> Path:
    """Fill ``disk`` up, but for about ``leave`` bytes; the filler file, to remove to free it."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            f.write(b"\0" * max(0, os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize - leave))
            while not leave:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


def disk_full_line(sweep: Path) -> re.Pattern[str]:
    names = "|".join(re.escape(n) for n in REPORT_FILES)
    return re.compile(
        rf"disk full: cannot write {re.escape(str(sweep))}/({names}) \(No space left on device\); the sweep dir has "
        rf"no summary\.md until the report is written whole: free space, then run prune-exp-report "
        rf"{re.escape(str(sweep))}"
    )


@pytest.mark.slow
def test_a_full_disk_fails_the_report_command_in_one_line_and_leaves_no_stale_summary(
    real_sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with tiny_disk(tmp_path / "disk", "4m") as disk:
        sweep = copy_of(real_sweep, disk)
        jobs, results = jobs_of(sweep), (sweep / "results.csv").read_bytes()
        filler = fill(disk)
        code, out, err = report(capsys, sweep)
        assert (code, out) == (1, "") and len(err.splitlines()) == 1
        assert disk_full_line(sweep).fullmatch(err.strip().removeprefix("prune-exp-report: error: "))
        assert not (sweep / SUMMARY_FILE).exists()  # the old one would pass for the current report
        assert jobs_of(sweep) == jobs and (sweep / "results.csv").read_bytes() == results
        assert not list(sweep.glob(".*.tmp"))
        filler.unlink()  # space again: the same command writes the whole report
        code, out, _ = report(capsys, sweep)
        assert code == 0 and "3 jobs: 3 done." in (sweep / SUMMARY_FILE).read_text()


@pytest.mark.slow
def test_a_full_disk_during_a_sweeps_report_fails_the_sweep(tmp_path: Path) -> None:
    with tiny_disk(tmp_path / "disk", "4m") as disk:
        sweep = disk / "sweep"
        args = ["-m", "debug=fast", "retrain=finetune,lr_rewind", f"hydra.sweep.dir={sweep}"]
        code, err = run_in_process(tmp_path, args)  # the caches live in tmp_path/outputs, off this disk
        assert code == 0, err[-3000:]
        assert "2 jobs: 2 done." in (sweep / SUMMARY_FILE).read_text()
        fill(disk, leave=40_000)  # room for the jobs' second run (Hydra's .hydra files, logs), not a figure
        code, err = run_in_process(tmp_path, args)
        last = err.rstrip().splitlines()[-1]
        assert code == 1 and "Traceback" not in err and "UserWarning" not in err, err[-3000:]
        assert last.startswith("prune-exp: the sweep's report was not written: ")
        assert disk_full_line(sweep).fullmatch(last.removeprefix("prune-exp: the sweep's report was not written: "))
        assert not (sweep / SUMMARY_FILE).exists()
