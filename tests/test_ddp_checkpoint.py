"""A DDP run cannot hang on its checkpoint: rank 0 decides when to save, for every rank.

Two CPU processes (gloo) train a tiny model under Lightning's real ``ddp`` strategy with the
real ResumeCheckpoint; each rank reads its own fake clock, and the clocks disagree on whether
``every_s`` has passed. ``Trainer.save_checkpoint`` holds a barrier, so ranks that decide on
their own clocks wait on each other forever; the run is a subprocess with a timeout, so a hang
is a failure of this test, not a stuck suite.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # two processes, each importing torch and Lightning: ~15 s

SCRIPT = r'''
import json, sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader, TensorDataset

from prune_exp.store.checkpoint import ResumeCheckpoint, SafeCheckpointIO, load_checkpoint

out = Path(sys.argv[1])
path = out / "resume.ckpt"
# Each rank's clock at the stage's start and at the end of epochs 0, 1, 2 (every_s = 25):
# epoch 0: rank 0 has waited 30 s (save), rank 1 10 s (not); epoch 1: rank 0 10 s since its
# save (not), rank 1 40 s since the start or 30 s since the save (save); epoch 2: both save.
TIMES = {0: [0.0, 30.0, 40.0, 70.0], 1: [0.0, 10.0, 40.0, 50.0]}


class RankClock:
    """This rank's fake clock: the time of the last epoch end ``Tick`` has seen."""

    def __init__(self) -> None:
        self.rank, self.tick = 0, 0

    def __call__(self) -> float:
        return TIMES[self.rank][self.tick]


clock = RankClock()
seen = []


class Tick(Callback):  # a plain callback: runs before ResumeCheckpoint, a Checkpoint, runs last
    def setup(self, trainer, pl_module, stage) -> None:
        clock.rank = trainer.global_rank

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.global_rank == 0:
            seen.append(load_checkpoint(path)["epoch"] if path.exists() else None)
        clock.tick += 1


class Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, 2)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        data = TensorDataset(torch.randn(16, 4, generator=g), torch.randint(0, 2, (16,), generator=g))
        return DataLoader(data, batch_size=4)


torch.manual_seed(0)
trainer = pl.Trainer(
    accelerator="cpu",
    devices=2,
    strategy="ddp",
    max_epochs=3,
    callbacks=[Tick(), ResumeCheckpoint(path, every_s=25.0, clock=clock)],
    plugins=[SafeCheckpointIO()],
    logger=False,
    enable_progress_bar=False,
    enable_model_summary=False,
    default_root_dir=str(out),
)
trainer.fit(Tiny())
if trainer.global_rank == 0:
    seen.append(load_checkpoint(path)["epoch"] if path.exists() else None)
    # seen[e + 1]: the epoch of the last checkpoint written by the end of epoch e
    (out / "saved.json").write_text(json.dumps([e for e in range(3) if seen[e + 1] == e]))
'''


def run_bounded(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess | None:
    """Run ``args`` in its own process group; None (the whole group killed) if it outlives ``timeout``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # rank 1, which Lightning started, is in the group too
        proc.communicate()
        return None
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def test_ranks_whose_clocks_disagree_save_at_rank_0s_epochs_and_never_hang(tmp_path: Path) -> None:
    script = tmp_path / "ddp_clock.py"
    script.write_text(SCRIPT)
    res = run_bounded([sys.executable, str(script), str(tmp_path)], cwd=tmp_path, timeout=120)
    assert res is not None, "the two ranks hung on the checkpoint (killed after 120 s)"
    assert res.returncode == 0, res.stderr[-3000:]
    # rank 0's clock decides: saves at the ends of epochs 0 and 2, not 1 (where only rank 1 was due)
    assert json.loads((tmp_path / "saved.json").read_text()) == [0, 2]
