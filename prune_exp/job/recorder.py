"""What each round leaves behind: its record row, measured and written, its mask (and weights)
under ``rounds/``, and one log line.

The prune-retrain cycle is handed :meth:`RoundRecorder.record` when it is built, and hands it
every finished round. Before the first round it writes round 0, the dense model as the dense
run left it. The writer's rows travel through the stage's resume checkpoint, so a resumed job
goes on counting from them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prune_exp.dist import is_main, tensors_digest
from prune_exp.job.artifacts import save_round
from prune_exp.lit.callbacks import RoundResult
from prune_exp.lit.module import PruneModule
from prune_exp.measure.efficiency import RoundMeter
from prune_exp.pruning.pruner import Pruner
from prune_exp.store.columns import JobInfo, metric_key
from prune_exp.store.records import ParamCounts, RecordWriter, make_row

log = logging.getLogger("prune_exp")


@dataclass
class RoundRecorder:
    """Records the rounds of ``module``'s network, pruned by ``pruner``, into ``writer`` (and
    ``on_row``); with ``job_dir``, each round's mask (and with ``every_round`` its weights) under
    its ``rounds/`` (rank 0 writes)."""

    info: JobInfo
    writer: RecordWriter
    meter: RoundMeter
    dense_metrics: dict[str, float]  # the dense run's val and test metrics (its cache entry's)
    module: PruneModule
    pruner: Pruner
    on_row: Callable[[dict[str, Any]], None] | None = None  # each new row, once written (a tracker's)
    job_dir: Path | None = None
    every_round: bool = False  # artifacts.every_round: each round's weights too

    def record(self, result: RoundResult) -> None:
        module, pruner = self.module, self.pruner
        if not self.writer.rows:
            self._record_dense(module, pruner)
        last = self.writer.rows[-1]
        self.writer.append(
            make_row(
                self.info,
                round_=result.round,
                target_sparsity=result.target_sparsity,
                counts=ParamCounts.of(result.mask, pruner.prunable_names, _total(module)),
                mask_sha256=result.mask_digest,
                pruned=result.pruned,
                retrained=result.retrained,
                epochs=result.epochs,
                steps=result.steps,
                seconds=result.seconds,
                cum_epochs=last["cum_epochs"] + result.epochs,
                cum_steps=last["cum_steps"] + result.steps,
                cum_seconds=last["cum_seconds"] + result.seconds,
                efficiency=self._measure(module, result.mask, result.epochs, pruner),
                diagnostics=result.diagnostics,
            )
        )
        _log_round(self.writer.rows[-1], result.round, self.info.rounds)
        self._emit()
        if self.job_dir is not None and is_main():
            net = module.net if self.every_round else None
            save_round(self.job_dir, result.round, result.mask, net, pruner.prunable_names)

    def _record_dense(self, module: PruneModule, pruner: Pruner) -> None:
        """Round 0: the dense model, as loaded from the dense run."""
        mask = pruner.initial_mask()
        self.writer.append(
            make_row(
                self.info,
                round_=0,
                target_sparsity=0.0,
                counts=ParamCounts.of(mask, pruner.prunable_names, _total(module)),
                mask_sha256=tensors_digest(dict(mask)),
                pruned={},
                retrained=self.dense_metrics,
                epochs=0,
                steps=0,
                seconds=0.0,
                cum_epochs=self.info.dense_epochs,
                cum_steps=self.info.dense_steps,
                cum_seconds=self.info.dense_seconds,
                efficiency=self._measure(module, mask, 0, pruner),
            )
        )
        self._emit()

    def _emit(self) -> None:
        if self.on_row is not None:
            self.on_row(self.writer.rows[-1])

    def _measure(self, module: PruneModule, mask: Any, epochs: float, pruner: Pruner) -> dict:
        before = self.writer.rows[-1]["cum_train_flops"] if self.writer.rows else None
        return self.meter.measure(module.net, mask, epochs, before, keep=set(pruner.graph.output_layers))


def _total(module: PruneModule) -> int:
    return sum(p.numel() for p in module.net.parameters())


def _log_round(row: dict[str, Any], round_: int, rounds: int) -> None:
    m = row["select_metric"]
    split = "val" if metric_key("val", m) in row else "test"  # test alone: data.val_fraction=0
    log.info(
        "round %d/%d  sparsity %.4f  compression %.2fx  %s_%s pruned %.4f -> retrained %.4f  test_%s %.4f",
        round_,
        rounds,
        row["sparsity"],
        row["compression"],
        split,
        m,
        row.get(metric_key(split, m, pruned=True), float("nan")),
        row[metric_key(split, m)],
        m,
        row[metric_key("test", m)],
    )
