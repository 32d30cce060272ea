"""dense.weights=PATH: your own trained model is the dense stage. FT and LRR run on it; WR and
lottery, which need the dense run's earlier weights, run when dense.rewind_weights gives them
and are refused otherwise; the cache keys every file by its digest; the accuracy is measured
on the splits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import composed, run_in_process
from hydra.utils import instantiate
from safetensors.torch import load_file, save_file

from prune_exp.app.preflight import check_job
from prune_exp.app.run import dense_spec_of
from prune_exp.config import ConfigError
from prune_exp.errors import DataError
from prune_exp.lit.module import PruneModule
from prune_exp.models.init import build_net
from prune_exp.store.dense_cache import DenseCache
from prune_exp.store.records import read_records


def trained_file(root: Path, name: str = "mine.safetensors", seed: int = 5, **model) -> Path:
    """A model of debug=fast's config, 'trained' by the user elsewhere: here, a seeded init."""
    overrides = ["debug=fast", *(f"model.{k}={v}" for k, v in model.items())]
    with composed(overrides) as cfg:
        dm = instantiate(cfg.data, data_dir=str(root / "data"))
        torch.manual_seed(seed)
        net = build_net(cfg.model, dm.input_shape, dm.num_classes)
    path = root / name
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(path)) if name.endswith(".safetensors") else torch.save(state, path)
    return path


def test_finetune_and_lr_rewinding_run_on_your_own_weights(tmp_path: Path) -> None:
    weights = trained_file(tmp_path)
    sweep = tmp_path / "sweep"
    args = ["-m", "debug=fast", f"dense.weights={weights}", "retrain=finetune,lr_rewind", f"hydra.sweep.dir={sweep}"]
    code, err = run_in_process(tmp_path, args)
    assert code == 0, err[-3000:]
    jobs = [read_records(sweep / str(n) / "records.jsonl") for n in range(2)]
    assert {rows[0]["strategy"] for rows in jobs} == {"finetune", "lr_rewind"}
    assert jobs[0][0]["dense_hash"] == jobs[1][0]["dense_hash"]  # one cache entry for the file
    assert [rows[0]["dense_steps"] for rows in jobs] == [0, 0]  # read, not trained
    with composed(["debug=fast"]) as cfg:  # round 0 is the file's model, measured on the splits
        dm = instantiate(cfg.data, data_dir=str(tmp_path / "data"))
        dm.setup("fit")
        net = build_net(cfg.model, dm.input_shape, dm.num_classes)
    net.load_state_dict(load_file(str(weights)))
    measured = PruneModule(net, None, dm.num_classes).evaluate(dm.test_dataloader())
    assert jobs[0][0]["test_acc"] == measured["acc"] and jobs[0][0]["test_loss"] == pytest.approx(measured["loss"])
    assert all(rows[-1]["round"] == 1 for rows in jobs)


def test_the_cache_keys_the_file_by_its_bytes(tmp_path: Path) -> None:
    a, b = trained_file(tmp_path, "a.safetensors", seed=1), trained_file(tmp_path, "b.safetensors", seed=2)
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(a.read_bytes())

    def spec(path: Path) -> dict:
        with composed(["debug=fast", f"dense.weights={path}", f"paths.root_dir={tmp_path}"]) as cfg:
            return dense_spec_of(cfg, "digest")

    assert spec(a) == spec(copy) != spec(b)  # same bytes elsewhere: a hit; other bytes: never
    assert "seed" not in spec(a) and spec(a)["weights"] != spec(b)["weights"]


class NotATensor:
    pass


@pytest.mark.parametrize(
    ("make", "overrides", "error", "message"),
    [
        (
            None,
            ["retrain=weight_rewind"],
            ConfigError,
            r"dense\.rewind_weights=\{\} is not allowed; allowed: a file for epoch 1, where weight_rewind rewinds to "
            r"\(retrain\.rewind_to=T-t, T=2, t=1\).*dense\.rewind_weights=\{1:PATH\}",
        ),
        (None, ["retrain=lottery"], ConfigError, r"allowed: a file for epoch 0, where lottery rewinds to"),
        (
            None,
            ["retrain=weight_rewind", "retrain.rewind_to=5it"],
            ConfigError,
            r"retrain\.rewind_to='5it' is not allowed; allowed: a whole epoch with dense\.weights",
        ),
        (None, ["+dense.rewind_weights={7:x.pt}"], ConfigError, r"dense\.rewind_weights=\{7: 'x\.pt'\}.*\[0, 2\)"),
        ("unfit", ["retrain=weight_rewind"], ConfigError, r"dense\.rewind_weights\[1\]='.*small\.pt' does not fit"),
        (
            None,
            ["model.hidden=[8]"],
            ConfigError,
            r"does not fit model \(not in the model \['fc2\.bias', 'fc2\.weight'\]; of other shapes \['classifier\.we",
        ),
        ("missing", [], DataError, r"dense\.weights='.*nope\.pt': no such file"),
        (
            "garbage",
            [],
            DataError,
            r"dense\.weights='.*bad\.pt' is not safetensors or a torch state dict: it is binary data of no known",
        ),
        (
            "pickle",
            [],
            DataError,
            r"dense\.weights='.*obj\.pt' cannot be read as weights \(it holds pickled objects.*weights_only=True",
        ),
        ("empty", [], DataError, r"dense\.weights='.*empty\.pt' holds no state dict"),
    ],
)
def test_weights_that_cannot_be_the_dense_stage_are_refused_before_anything_runs(
    tmp_path: Path, make: str | None, overrides: list[str], error: type, message: str
) -> None:
    path = trained_file(tmp_path)
    if make == "missing":
        path = tmp_path / "nope.pt"
    elif make == "garbage":
        path = tmp_path / "bad.pt"
        path.write_bytes(b"\x00garbage" * 20)
    elif make == "pickle":
        path = tmp_path / "obj.pt"
        torch.save({"w": NotATensor()}, path)
    elif make == "empty":
        path = tmp_path / "empty.pt"
        torch.save({}, path)
    elif make == "unfit":
        overrides = [*overrides, f"+dense.rewind_weights={{1:{trained_file(tmp_path, 'small.pt', hidden='[8]')}}}"]
    with composed(["debug=fast", f"dense.weights={path}", *overrides]) as cfg, pytest.raises(error, match=message):
        check_job(cfg)


def test_rewind_weights_given_with_the_final_ones_let_wr_and_lottery_run(tmp_path: Path) -> None:
    final, start, middle = (
        trained_file(tmp_path, f"{n}.safetensors", seed=s) for n, s in (("T", 1), ("e0", 2), ("e1", 3))
    )
    sweep = tmp_path / "sweep"
    given = [f"dense.weights={final}", f"+dense.rewind_weights={{0:{start},1:{middle}}}"]
    args = ["-m", "debug=fast", *given, "retrain=weight_rewind,lottery", f"hydra.sweep.dir={sweep}"]
    code, err = run_in_process(tmp_path, args)
    assert code == 0, err[-3000:]
    jobs = [read_records(sweep / str(n) / "records.jsonl") for n in range(2)]
    assert [rows[0]["strategy"] for rows in jobs] == ["weight_rewind", "lottery"]
    assert [rows[0]["dense_steps"] for rows in jobs] == [0, 0] and jobs[0][0]["dense_hash"] == jobs[1][0]["dense_hash"]
    entry = DenseCache(tmp_path / "outputs" / "cache").load(jobs[0][0]["dense_hash"])
    assert entry is not None and entry.saved_epochs == {0, 1, 2}
    for epoch, path in ((0, start), (1, middle), (2, final)):  # each epoch's weights are its file's, bit for bit
        assert all(torch.equal(entry.state(epoch)[k], v) for k, v in load_file(str(path)).items())
    with composed(["debug=fast", *given, f"paths.root_dir={tmp_path}"]) as cfg:
        spec = dense_spec_of(cfg, "digest")
    assert set(spec["rewind_weights"]) == {"0", "1"} and spec["rewind_weights"]["1"] != spec["weights"]
