"""What each round leaves behind: its record row, measured and written, and one log line.

The prune-retrain cycle hands every finished round to :meth:`RoundRecorder.record`. Before the
first round it writes round 0, the dense model as the dense run left it. The writer's rows
travel through the stage's resume checkpoint, so a resumed job goes on counting from them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prune_exp.dist import tensors_digest
from prune_exp.efficiency import RoundMeter
from prune_exp.lit.callbacks import RoundResult
from prune_exp.lit.module import PruneModule
from prune_exp.pruning.pruner import Pruner
from prune_exp.records import JobInfo, ParamCounts, RecordWriter, make_row

log = logging.getLogger("prune_exp")


@dataclass
class RoundRecorder:
    info: JobInfo
    writer: RecordWriter
    meter: RoundMeter
    dense_metrics: dict[str, float]  # the dense run's val and test metrics (its cache entry's)
    on_row: Callable[[dict[str, Any]], None] | None = None  # each new row, once written (a tracker's)

    def record(self, result: RoundResult, module: PruneModule, pruner: Pruner) -> None:
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
            )
        )
        _log_round(self.writer.rows[-1], result.round, self.info.rounds)
        self._emit()

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
    split = "val" if f"val_{m}" in row else "test"  # test alone: data.val_fraction=0
    log.info(
        "round %d/%d  sparsity %.4f  compression %.2fx  %s_%s pruned %.4f -> retrained %.4f  test_%s %.4f",
        round_,
        rounds,
        row["sparsity"],
        row["compression"],
        split,
        m,
        row.get(f"pruned_{split}_{m}", float("nan")),
        row[f"{split}_{m}"],
        m,
        row[f"test_{m}"],
    )
