"""Every round's mask (1 bit per weight) and, with artifacts.every_round, its weights: any level
of a job can be picked up again, and the report shows the per-layer sparsity by round."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from safetensors.torch import load_file

from prune_exp.dist import tensors_digest
from prune_exp.job.artifacts import load_round
from prune_exp.lit.module import PruneModule
from prune_exp.models.init import build_net
from prune_exp.pruning.mask import Mask
from prune_exp.store.files import MASK_FILE, WEIGHTS_FILE, round_mask_file
from prune_exp.store.records import read_records


def test_a_packed_mask_is_one_bit_per_entry_and_reads_back_equal(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    shapes = {"a": (13, 7), "b.weight": (3, 5, 2, 2), "c": (1,)}  # sizes that are not multiples of 8
    mask = Mask({n: torch.rand(s, generator=g) > 0.3 for n, s in shapes.items()})
    mask.save(tmp_path / "packed.safetensors", prunable=["a"], packed=True)
    mask.save(tmp_path / "plain.safetensors", prunable=["a"])
    assert Mask.load(tmp_path / "packed.safetensors") == mask == Mask.load(tmp_path / "plain.safetensors")
    payload = sum(math.ceil(math.prod(s) / 8) for s in shapes.values())
    packed = load_file(str(tmp_path / "packed.safetensors"))
    assert sum(t.numel() for t in packed.values()) == payload and all(t.dtype == torch.uint8 for t in packed.values())


@pytest.mark.slow
def test_every_rounds_mask_and_weights_are_kept_and_reproduce_the_records(small_sweep) -> None:
    root, jobs = small_sweep
    sweep = root / "sweep"
    for job in jobs.values():
        rows = read_records(job / "records.jsonl")
        cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
        assert [r["round"] for r in rows] == [0, 1, 2]
        masks = []
        for r in rows[1:]:
            mask, weights = load_round(job, r["round"])
            assert tensors_digest(dict(mask)) == r["mask_sha256"]  # the very mask the round recorded
            masks.append(mask)
            # the round's weights give the round's record, and its pruned entries are 0
            dm = instantiate(cfg.data, data_dir=str(root / "data"), shuffle_seed=cfg.seed)
            dm.setup("fit")
            net = build_net(cfg.model, dm.input_shape, dm.num_classes)
            net.load_state_dict(weights)
            assert all(not bool(weights[k][~m].any()) for k, m in mask.items())
            assert PruneModule(net, None, dm.num_classes).evaluate(dm.test_dataloader())["acc"] == r["test_acc"]
        assert masks[1].is_subset_of(masks[0]) and masks[1] != masks[0]  # masks only shrink
        assert masks[-1] == Mask.load(job / MASK_FILE)  # the last round is the final mask
        final = load_file(str(job / WEIGHTS_FILE))
        last = load_round(job, rows[-1]["round"])[1]
        assert last.keys() == final.keys() and all(torch.equal(last[k], v) for k, v in final.items())
        assert (job / round_mask_file(1)).stat().st_size < (job / MASK_FILE).stat().st_size / 2
    with pytest.raises(FileNotFoundError, match=r"no round 9 in"):
        load_round(jobs[("mlflow", 0)], 9)
    assert (sweep / "layer_sparsity_by_round.png").stat().st_size > 10_000
