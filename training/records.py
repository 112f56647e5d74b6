"""Plain records the fine-tuning code trains on: no Django, no torch.

The Django glue turns judgements and variants into these; `training.trainer.train_editor`
takes a list of `EditExample` (supervised, weighted, conditional, multireward) or a list
of `PreferencePair` (dpo).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EditExample:
    """A (source, edited) pair with its instruction and the feedback it got."""

    source: Path
    edited: Path
    instruction: str
    reward: float | None = None  # scalar reward (human aggregate or reward model)
    aspects: dict[str, float] | None = None  # 0..5 per aspect: following, preserving, quality
    note: str = ""  # failure note text (optional conditioning)


@dataclass(frozen=True)
class PreferencePair:
    """Two edits of one source for one instruction, `chosen` preferred over `rejected`."""

    source: Path
    chosen: Path
    rejected: Path
    instruction: str
    weight: float = 1.0
