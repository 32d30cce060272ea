"""Input-shape checks shared by the image models: a model that cannot take the data's shape
fails when it is built (the preflight builds every job's model), naming what it needs."""

from __future__ import annotations

from collections.abc import Sequence

from prune_exp.config import ConfigError


def image_shape(input_shape: Sequence[int], model: str) -> tuple[int, int, int]:
    """``input_shape`` as (channels, height, width); ConfigError for anything else."""
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(
            f"model {model} needs image inputs, the data's input_shape {shape} is not allowed; "
            "allowed: (channels, height, width), image data such as data=mnist"
        )
    return shape  # type: ignore[return-value]


def too_small(model: str, input_shape: Sequence[int], where: str, minimum: str) -> ConfigError:
    """The error for an image that shrinks to nothing inside the network."""
    return ConfigError(
        f"model {model}: input_shape {tuple(input_shape)} shrinks to nothing at {where}; "
        f"allowed: images of at least {minimum} pixels"
    )
