"""Training speed, side by side in one run: prune_exp's masked epoch vs the same model dense,
vs a bare PyTorch loop, vs Lightning's ModelPruning callback and torch.nn.utils.prune masks.

Same model, data (in memory), batch size, optimizer (SGD, momentum 0.9, weight decay), the
same validation pass after every epoch, 90% global unstructured sparsity where masked.
Every variant trains ``--epochs`` epochs per repetition; the variants are run in turn,
repeated ``--reps`` times, and the script prints the median seconds per epoch and the
ratios the targets are stated in:

- masked / dense training in prune_exp (target <= 1.05)
- prune_exp / bare PyTorch loop, both masked (target <= 1.15)
- ModelPruning / prune_exp and torch.nn.utils.prune (bare loop) / prune_exp
- a minimal LightningModule (same masking, nothing of prune_exp's) splits the prune_exp /
  bare gap into Lightning's own per-step cost and prune_exp's
- a round's LR set before every step as the round cycle does, from retrain/lr.RoundLR (LLR with
  a cosine warmup) / from the dense schedule's position as before the LR vocabulary (issue 24:
  target ~1, nothing measurable)

    uv run python scripts/bench_training.py --model cnn1d        # MNIST-1D's CNN
    uv run python scripts/bench_training.py --model lenet300     # LeNet-300-100, MNIST-shaped data
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, ModelPruning
from torch import nn
from torch.nn.utils import prune as torch_prune

from prune_exp.config import ConstantScheduleConfig, SGDConfig, TrainerConfig
from prune_exp.data.mnist1d import MNIST1DDataModule
from prune_exp.data.synthetic import SyntheticDataModule
from prune_exp.lit.callbacks import MaskEnforcer
from prune_exp.lit.module import PruneModule
from prune_exp.lit.trainer import make_trainer
from prune_exp.models.cnn1d import CNN1D
from prune_exp.models.mlp import MLP
from prune_exp.pruning.criteria import Magnitude
from prune_exp.pruning.pruner import Pruner
from prune_exp.pruning.structure import Unstructured
from prune_exp.retrain.lr import RoundLR
from prune_exp.retrain.schedules import LRPosition, LRSchedule

warnings.filterwarnings("ignore")
SPARSITY, LR = 0.9, 0.05
OPTIM = SGDConfig(lr=LR, momentum=0.9, weight_decay=5e-4, schedule=ConstantScheduleConfig())


def setup(model: str, data_dir: str):
    if model == "cnn1d":
        dm = MNIST1DDataModule(batch_size=128, eval_batch_size=1000, val_fraction=0.1, split_seed=0, data_dir=data_dir)

        def build() -> nn.Module:
            return CNN1D((1, 40), 10)
    else:
        dm = SyntheticDataModule(
            batch_size=60, eval_batch_size=1000, val_fraction=0.1, split_seed=0, num_samples=15000,
            num_classes=10, shape=(1, 28, 28), noise=1.0,
        )  # fmt: skip

        def build() -> nn.Module:
            return MLP((1, 28, 28), 10, hidden=[300, 100])

    dm.setup()
    return dm, build


def masked_net(build):
    torch.manual_seed(0)
    net = build()
    pruner = Pruner(net, criterion=Magnitude(), structure=Unstructured(), scope="global", sparsities=[SPARSITY])
    mask = pruner.prune(pruner.initial_mask(), 1)
    return net, mask


# ---------------------------------------------------------------------------- prune_exp
class EnforcedModule(PruneModule):
    """PruneModule whose optimizer the enforcer is attached to when it is made (what
    PruneRetrainCycle does at the fit's start), without a callback of its own."""

    def __init__(self, *args, enforcer: MaskEnforcer, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._enforcer = enforcer

    def configure_optimizers(self):
        opt = super().configure_optimizers()
        self._enforcer.attach([opt])
        return opt


class CallbackEnforcer(Callback):
    """The mask enforcement as it was before: a Lightning callback (gradients masked in
    on_before_optimizer_step, weights in the optimizer's post-step hook)."""

    def __init__(self, net: nn.Module, mask) -> None:
        params = dict(net.named_parameters())
        self.pairs = [(params[n], m.float()) for n, m in mask.items() if not bool(m.all())]
        with torch.no_grad():
            torch._foreach_mul_([p for p, _ in self.pairs], [f for _, f in self.pairs])

    def _weights(self, *_) -> None:
        with torch.no_grad():
            torch._foreach_mul_([p for p, _ in self.pairs], [f for _, f in self.pairs])

    def on_fit_start(self, trainer, pl_module) -> None:
        self._hooks = [opt.register_step_post_hook(self._weights) for opt in trainer.optimizers]

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        torch._foreach_mul_([p.grad for p, _ in self.pairs], [f for _, f in self.pairs])


def run_prune_exp(dm, build, epochs: int, masked: bool, enforcement: str = "hooks") -> float:
    """enforcement: hooks (MaskEnforcer: torch's grad and optimizer hooks) | callback (before)."""
    net, mask = masked_net(build)
    callbacks: list[Callback] = []
    if masked and enforcement == "hooks":
        enforcer = MaskEnforcer(net)
        enforcer.set_mask(mask)
        module = EnforcedModule(net, OPTIM, dm.num_classes, enforcer=enforcer)
    else:
        module = PruneModule(net, OPTIM, dm.num_classes)
        if masked:
            callbacks.append(CallbackEnforcer(net, mask))
    module.lr_position = LRPosition(LRSchedule(LR, epochs, OPTIM.schedule), 0, 0, dm.steps_per_epoch)
    trainer = make_trainer(TrainerConfig(), max_epochs=epochs, callbacks=callbacks, log_dir=_tmp(), progress_bar=False)
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    return (time.perf_counter() - start) / epochs


class RoundLRSetter(Callback):
    """Sets every optimizer's LR before every step from ``lr(global_step)``, as the round cycle
    does (lit/cycle.RoundCycle.on_train_batch_start, one arm)."""

    def __init__(self, lr) -> None:
        self.lr = lr

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        lr = self.lr(trainer.global_step)
        for opt in trainer.optimizers:
            for group in opt.param_groups:
                group["lr"] = lr


def run_round_lr(dm, build, epochs: int, vocabulary: bool) -> float:
    """Masked training with a round's LR set before every step: a RoundLR (LLR, 10% cosine
    warmup) if ``vocabulary``, else the dense schedule's LRPosition (the code before it)."""
    net, mask = masked_net(build)
    enforcer = MaskEnforcer(net)
    enforcer.set_mask(mask)
    module = EnforcedModule(net, OPTIM, dm.num_classes, enforcer=enforcer)  # lr_position None: the callback's LR
    steps = epochs * dm.steps_per_epoch
    if vocabulary:
        lr = RoundLR("linear", steps, peak=LR, warmup_steps=steps // 10, warmup_shape="cosine")
    else:
        lr = LRPosition(LRSchedule(LR, epochs, OPTIM.schedule), 0, 0, dm.steps_per_epoch).lr
    trainer = make_trainer(
        TrainerConfig(), max_epochs=epochs, callbacks=[RoundLRSetter(lr)], log_dir=_tmp(), progress_bar=False
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    return (time.perf_counter() - start) / epochs


def run_model_pruning(dm, build, epochs: int) -> float:
    """Lightning's ModelPruning: torch.nn.utils.prune under the hood (weight_orig * mask hooks)."""
    torch.manual_seed(0)
    net = build()
    module = PruneModule(net, OPTIM, dm.num_classes)
    module.lr_position = LRPosition(LRSchedule(LR, epochs, OPTIM.schedule), 0, 0, dm.steps_per_epoch)
    pruning = ModelPruning(
        "l1_unstructured", amount=lambda epoch: SPARSITY if epoch == 0 else 0.0, use_global_unstructured=True,
        verbose=0,
    )  # fmt: skip
    trainer = make_trainer(TrainerConfig(), max_epochs=epochs, callbacks=[pruning], log_dir=_tmp(), progress_bar=False)
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    return (time.perf_counter() - start) / epochs


# ---------------------------------------------------------------- Lightning, nothing of ours
class MinimalModule(pl.LightningModule):
    """The least a LightningModule needs for the same training: what Lightning's own loop
    costs, without prune_exp's metrics, logging, LR schedule or callbacks."""

    def __init__(self, net: nn.Module, mask: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.net = net
        params = dict(net.named_parameters())
        self.pairs = [(params[n], m.float()) for n, m in mask.items()]
        with torch.no_grad():
            torch._foreach_mul_([p for p, _ in self.pairs], [f for _, f in self.pairs])

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def on_before_optimizer_step(self, optimizer) -> None:
        torch._foreach_mul_([p.grad for p, _ in self.pairs], [f for _, f in self.pairs])

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        with torch.no_grad():
            torch._foreach_mul_([p for p, _ in self.pairs], [f for _, f in self.pairs])

    def validation_step(self, batch, batch_idx) -> None:
        x, y = batch
        logits = self.net(x)
        F.cross_entropy(logits, y), (logits.argmax(1) == y).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.net.parameters(), lr=LR, momentum=0.9, weight_decay=5e-4)


def run_minimal_lightning(dm, build, epochs: int) -> float:
    net, mask = masked_net(build)
    trainer = pl.Trainer(
        max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, deterministic=True,
    )  # fmt: skip
    start = time.perf_counter()
    trainer.fit(MinimalModule(net, dict(mask.items())), datamodule=dm)
    return (time.perf_counter() - start) / epochs


# ------------------------------------------------------------------------------ bare loop
def run_bare(dm, build, epochs: int, masking: str) -> float:
    """masking: none | manual (grads and weights multiplied, as prune_exp does) | torch (nn.utils.prune)."""
    net, mask = masked_net(build)
    params = dict(net.named_parameters())
    pairs = [(params[n], m.float()) for n, m in mask.items()]
    if masking == "torch":
        for name, m in mask.items():
            module_name = name.rsplit(".", 1)[0]
            torch_prune.custom_from_mask(net.get_submodule(module_name), "weight", m)
    if masking == "manual":
        for p, f in pairs:
            p.data.mul_(f)
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9, weight_decay=5e-4)
    x, y = dm.train.x, dm.train.y
    n, b = len(y), dm.batch_size
    start = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        g = torch.Generator().manual_seed(epoch)
        order = torch.randperm(n, generator=g)
        for i in range(0, n, b):
            idx = order[i : i + b]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if masking == "manual":
                torch._foreach_mul_([p.grad for p, _ in pairs], [f for _, f in pairs])
            opt.step()
            if masking == "manual":
                with torch.no_grad():
                    torch._foreach_mul_([p for p, _ in pairs], [f for _, f in pairs])
        net.eval()  # the same validation pass prune_exp makes every epoch
        with torch.no_grad():
            for i in range(0, len(dm.val.y), dm.eval_batch_size):
                x_val, y_val = dm.val.x[i : i + dm.eval_batch_size], dm.val.y[i : i + dm.eval_batch_size]
                logits = net(x_val)
                F.cross_entropy(logits, y_val), (logits.argmax(1) == y_val).sum()
    return (time.perf_counter() - start) / epochs


def _tmp() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="bench_")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["cnn1d", "lenet300"], default="cnn1d")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--data-dir", default="data")
    args = ap.parse_args()
    dm, build = setup(args.model, args.data_dir)
    variants = {
        "prune_exp, masked": lambda: run_prune_exp(dm, build, args.epochs, masked=True),
        "prune_exp, masked, enforced by a callback (before)": lambda: run_prune_exp(
            dm, build, args.epochs, masked=True, enforcement="callback"
        ),
        "prune_exp, dense": lambda: run_prune_exp(dm, build, args.epochs, masked=False),
        "prune_exp, masked, a round's LR: dense position (before)": lambda: run_round_lr(
            dm, build, args.epochs, vocabulary=False
        ),
        "prune_exp, masked, a round's LR: RoundLR": lambda: run_round_lr(dm, build, args.epochs, vocabulary=True),
        "Lightning, minimal module, masked": lambda: run_minimal_lightning(dm, build, args.epochs),
        "bare loop, masked": lambda: run_bare(dm, build, args.epochs, "manual"),
        "bare loop, dense": lambda: run_bare(dm, build, args.epochs, "none"),
        "bare loop, torch.nn.utils.prune": lambda: run_bare(dm, build, args.epochs, "torch"),
        "Lightning ModelPruning": lambda: run_model_pruning(dm, build, args.epochs),
    }
    for fn in variants.values():  # warm-up: imports, allocator, first-call costs
        fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.reps):
        for name, fn in variants.items():
            times[name].append(fn())
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"{args.model}: {len(dm.train)} training examples, batch {dm.batch_size}, {dm.steps_per_epoch} steps/epoch, "
        f"{args.epochs} epochs x {args.reps} reps, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print("| variant | s / epoch (median) |")
    print("|---|---|")
    for k, v in med.items():
        print(f"| {k} | {v * 1e3:.1f} ms |")
    print()
    print("| ratio | value | target |")
    print("|---|---|---|")
    print(
        f"| prune_exp masked / prune_exp dense | {med['prune_exp, masked'] / med['prune_exp, dense']:.3f} | <= 1.05 |"
    )
    before = med["prune_exp, masked, enforced by a callback (before)"]
    print(f"| prune_exp masked, hooks / callback (before) | {med['prune_exp, masked'] / before:.3f} | < 1 |")
    lr_before = med["prune_exp, masked, a round's LR: dense position (before)"]
    lr_ratio = med["prune_exp, masked, a round's LR: RoundLR"] / lr_before
    print(f"| a round's LR: RoundLR / dense position (before) | {lr_ratio:.3f} | ~1 |")
    print(f"| bare masked / bare dense | {med['bare loop, masked'] / med['bare loop, dense']:.3f} | |")
    print(
        f"| prune_exp masked / bare loop masked | {med['prune_exp, masked'] / med['bare loop, masked']:.3f} | <= 1.15 |"
    )
    lit = med["Lightning, minimal module, masked"]
    print(f"| Lightning minimal / bare loop, masked (Lightning's own cost) | {lit / med['bare loop, masked']:.3f} | |")
    print(f"| prune_exp / Lightning minimal, masked (prune_exp's own cost) | {med['prune_exp, masked'] / lit:.3f} | |")
    print(f"| ModelPruning / prune_exp masked | {med['Lightning ModelPruning'] / med['prune_exp, masked']:.3f} | |")
    ratio = med["bare loop, torch.nn.utils.prune"] / med["prune_exp, masked"]
    print(f"| torch.nn.utils.prune (bare loop) / prune_exp masked | {ratio:.3f} | |")


if __name__ == "__main__":
    main()
