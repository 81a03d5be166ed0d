"""Learning-rate schedules (per optimiser step), shared by style inversion and transfer training."""
from __future__ import annotations

import math

__all__ = ["LR_SCHEDULES", "lr_factor"]

LR_SCHEDULES = ("constant", "cosine")


def lr_factor(step: int, total_steps: int, warmup_steps: int, min_ratio: float = 0.0, *,
              schedule: str = "cosine") -> float:
    """Multiplier of the base learning rate at optimiser step `step` (0-based).

    Warmup ramps (step + 1) / warmup_steps so the first step already moves; then `constant`
    stays at 1 and `cosine` goes from 1 to `min_ratio` over the remaining steps."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
