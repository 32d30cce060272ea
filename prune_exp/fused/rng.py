"""Each fused arm's own random stream for what its network draws in a training step (dropout,
or any random op of a user's module): torch's global generator, as the arm's unfused job has
it, swapped in around the arm's forward. An arm's draws are then a function of its own seed,
never of its place in the group or of which other jobs share the group.

Arm i's stream starts as its unfused job's global generator does at its rounds' fit
(job/rounds.fit_rounds: ``pl.seed_everything(seed)``). The draws are not that job's: there,
every DataLoader iterator also draws a seed from the global generator (torch's
``_BaseDataLoaderIter``), at every epoch's training and validation. A dropout network's fused
and unfused records therefore differ at the level of the seeds' spread, as two runs on two
machines do; every other network's agree up to float rounding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch


def _seeded(seed: int, device: torch.device) -> torch.Tensor:
    """The state of ``device``'s generator after ``torch.manual_seed(seed)``."""
    return torch.Generator(device=device).manual_seed(seed).get_state()


class ArmRNG:
    """Arm i's generator state on every device its forward ran on, starting from ``seeds[i]``."""

    def __init__(self, seeds: Sequence[int]) -> None:
        self.seeds = [int(s) for s in seeds]
        self.states: dict[str, list[torch.Tensor]] = {}  # device -> each arm's state

    @contextlib.contextmanager
    def arm(self, i: int, device: torch.device) -> Iterator[None]:
        """Inside: the global generator of ``device`` (and the CPU's) is arm i's; outside, as it was."""
        devices = {torch.device("cpu"), torch.device(device)}
        held = {d: self._get(d) for d in devices}
        try:
            for d in devices:
                self._set(d, self._states(d)[i])
            yield
        finally:
            for d in devices:
                self._states(d)[i] = self._get(d)
                self._set(d, held[d])

    def _states(self, device: torch.device) -> list[torch.Tensor]:
        key = str(device)
        if key not in self.states:
            self.states[key] = [_seeded(s, device) for s in self.seeds]
        return self.states[key]

    @staticmethod
    def _get(device: torch.device) -> torch.Tensor:
        return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()

    @staticmethod
    def _set(device: torch.device, state: torch.Tensor) -> None:
        if device.type == "cuda":
            torch.cuda.set_rng_state(state, device)
        else:
            torch.set_rng_state(state)

    # ---- resume: the group's checkpoint holds every arm's states
    def state_dict(self) -> dict[str, Any]:
        return {"seeds": list(self.seeds), "states": {d: list(s) for d, s in self.states.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if list(state["seeds"]) != self.seeds:
            raise ValueError(f"the checkpoint's arms have seeds {state['seeds']}, the group's {self.seeds}")
        self.states = {d: [torch.as_tensor(t, dtype=torch.uint8).cpu() for t in s] for d, s in state["states"].items()}
