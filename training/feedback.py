"""Judgements and reward-model scores → the plain records the editor trainer learns from.

Django glue only (training/trainer.py never sees a row). A fine-tune learns from the
train split; the test split is kept for comparing the base and the fine-tuned editor.

Rewards per variant come from one of three sources (FinetuneRun.RewardSource):
- ``human``: the mean over annotators of the variant's aspect scores (0–5);
- ``model``: the reward model's prediction, for every variant, judged or not;
- ``human+model``: human where somebody judged the variant, the model elsewhere — a few
  human labels, many model labels (HP-Edit §3; HIVE §3.1 trains on reward-model labels).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

from django.conf import settings
from django.db.models import QuerySet
from PIL import Image as PILImage

from annotation.models import EditTask, Image, Judgement, Project, Variant
from editloop.jobs import JobSkipped
from rewards.models import RewardModelVersion, VariantScore
from rewards.selection import training_judgements
from training.records import EditExample, PreferencePair


class NotEnoughFeedback(JobSkipped):
    """Too little feedback for the chosen method: the run is skipped, saying what it needs."""


@dataclass(frozen=True)
class Filters:
    """Which feedback a run learns from (FinetuneRun.filters)."""

    include_simulated: bool = True
    rounds: tuple[int, ...] = ()
    generators: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, raw: dict) -> Filters:
        unknown = sorted(set(raw) - {"include_simulated", "rounds", "generators"})
        if unknown:
            raise ValueError(f"unknown filter(s): {', '.join(unknown)}")
        include = raw.get("include_simulated", True)
        if not isinstance(include, bool):
            raise ValueError("include_simulated must be true or false")
        rounds = raw.get("rounds", [])
        if not isinstance(rounds, list) or not all(
            isinstance(r, int) and r >= 1 for r in rounds
        ):
            raise ValueError("rounds must be a list of round numbers (1, 2, ...)")
        generators = raw.get("generators", [])
        if not isinstance(generators, list) or not all(isinstance(g, str) for g in generators):
            raise ValueError("generators must be a list of generator names")
        return cls(include, tuple(rounds), tuple(generators))


@dataclass
class VariantFeedback:
    reward: float
    aspects: dict[str, float] = field(default_factory=dict)
    note: str = ""
    source: str = "human"


def image_path(image: Image) -> Path:
    return Path(settings.MEDIA_ROOT) / image.file.name


def source_photo(task: EditTask) -> PILImage.Image:
    """The task's source image, decoded as RGB."""
    with PILImage.open(image_path(task.source)) as opened:
        return opened.convert("RGB")


# --- selecting ------------------------------------------------------------------------------


def train_tasks(project: Project, filters: Filters) -> QuerySet:
    tasks = EditTask.objects.filter(project=project, split="train", is_gold=False)
    if filters.rounds:
        tasks = tasks.filter(round__in=filters.rounds)
    return tasks


def train_variants(project: Project, filters: Filters) -> QuerySet:
    variants = Variant.objects.filter(task__in=train_tasks(project, filters))
    if filters.generators:
        variants = variants.filter(generator__in=filters.generators)
    return variants.select_related("image", "task__source")


def usable_judgements(project: Project, filters: Filters) -> QuerySet:
    """Train-split judgements, not marked unsure (an annotator's doubt is not a label)."""
    return (
        training_judgements(project, include_simulated=filters.include_simulated)
        .filter(assignment__task__in=train_tasks(project, filters), unsure=False)
    )


# --- rewards per variant --------------------------------------------------------------------


def human_feedback(judgements: QuerySet, keep: set[int]) -> dict[int, VariantFeedback]:
    """Mean over annotators of each variant's aspect scores, and its failure notes."""
    per_aspect: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    notes: dict[int, list[str]] = defaultdict(list)
    for judgement in judgements.only("scores", "notes"):
        for variant_id, scores in judgement.scores.items():
            for aspect, value in scores.items():
                per_aspect[int(variant_id)][aspect].append(value)
        for variant_id, by_aspect in (judgement.notes or {}).items():
            notes[int(variant_id)] += [f"{a}: {text}" for a, text in by_aspect.items() if text]
    feedback = {}
    for variant_id, aspects in per_aspect.items():
        if variant_id not in keep:
            continue
        means = {aspect: sum(v) / len(v) for aspect, v in aspects.items()}
        feedback[variant_id] = VariantFeedback(
            reward=sum(means.values()) / len(means),
            aspects=means,
            note="; ".join(notes.get(variant_id, [])),
        )
    return feedback


def model_feedback(
    source: str, version: RewardModelVersion | None, keep: set[int]
) -> dict[int, VariantFeedback]:
    """The reward model's scores of the variants in ``keep``; refuses, saying what to do,
    when there is no model or it has scored none of them yet."""
    if version is None:
        raise NotEnoughFeedback(
            f"reward source {source!r} needs a reward model: train one first "
            "(Retrain reward model now) or use the human reward source"
        )
    scores = VariantScore.objects.filter(version=version, variant_id__in=keep)
    found = {
        score.variant_id: VariantFeedback(
            reward=score.overall, aspects=dict(score.aspects), source="model"
        )
        for score in scores
    }
    if not found:
        raise NotEnoughFeedback(
            f"{version} has scored none of the train-split variants yet; wait for its "
            "scoring job to finish"
        )
    return found


def variant_feedback(
    project: Project,
    source: str,
    version: RewardModelVersion | None,
    filters: Filters,
    keep: set[int],
) -> dict[int, VariantFeedback]:
    """Rewards of the variants in ``keep`` from the chosen source."""
    human = (
        human_feedback(usable_judgements(project, filters), keep) if source != "model" else {}
    )
    if source == "human":
        return human
    model = model_feedback(source, version, keep)
    return {**model, **human} if source == "human+model" else model


# --- records --------------------------------------------------------------------------------


def edit_examples(
    project: Project,
    method: str,
    source: str,
    version: RewardModelVersion | None,
    filters: Filters,
) -> list[EditExample]:
    """One example per variant that has a reward; the supervised loss keeps only each
    task's preferred variants (HIVE §3.1 starts from the best edits)."""
    variants = list(train_variants(project, filters).order_by("id"))
    feedback = variant_feedback(project, source, version, filters, {v.pk for v in variants})
    variants = [variant for variant in variants if variant.pk in feedback]
    if method == "supervised":
        variants = preferred_variants(variants, feedback)
    return [
        EditExample(
            source=image_path(variant.task.source),
            edited=image_path(variant.image),
            instruction=variant.task.instruction,
            reward=feedback[variant.pk].reward,
            aspects=feedback[variant.pk].aspects or None,
            note=feedback[variant.pk].note,
        )
        for variant in variants
    ]


def preferred_variants(
    variants: list[Variant], feedback: dict[int, VariantFeedback]
) -> list[Variant]:
    """Per task, the variants with the task's highest reward (ties all kept)."""
    best: dict[int, float] = {}
    for variant in variants:
        reward = feedback[variant.pk].reward
        best[variant.task_id] = max(best.get(variant.task_id, reward), reward)
    return [v for v in variants if feedback[v.pk].reward == best[v.task_id]]


def preference_pairs(
    project: Project,
    source: str,
    version: RewardModelVersion | None,
    filters: Filters,
) -> list[PreferencePair]:
    """Chosen/rejected pairs. Human: every non-tied pair of every ranking, weighted
    1/pairs per judgement (as the reward model's Bradley–Terry data). Model: per task,
    every pair the reward model orders, weighted 1/pairs per task."""
    variants = {v.pk: v for v in train_variants(project, filters)}
    pairs: list[PreferencePair] = []
    if source != "model":
        for judgement in usable_judgements(project, filters).only("ranking"):
            ordered = ranked_pairs(judgement, variants)
            pairs += _weighted(ordered, variants)
    if source == "human":
        return pairs
    tasks = {v.task_id for v in variants.values()}
    if source == "human+model":  # the model labels only what nobody judged
        tasks -= _judged_tasks(project, filters)
    pairs += _model_pairs(model_feedback(source, version, set(variants)), variants, tasks)
    return pairs


def ranked_pairs(judgement: Judgement, variants: dict[int, Variant]) -> list[tuple[int, int]]:
    """(chosen, rejected) for every two variants in different tiers, better tier first."""
    tiers = [[v for v in tier if v in variants] for tier in judgement.ranking]
    return [
        (chosen, rejected)
        for upper, lower in combinations(range(len(tiers)), 2)
        for chosen in tiers[upper]
        for rejected in tiers[lower]
    ]


def _weighted(
    ordered: list[tuple[int, int]], variants: dict[int, Variant]
) -> list[PreferencePair]:
    return [
        PreferencePair(
            source=image_path(variants[chosen].task.source),
            chosen=image_path(variants[chosen].image),
            rejected=image_path(variants[rejected].image),
            instruction=variants[chosen].task.instruction,
            weight=1.0 / len(ordered),
        )
        for chosen, rejected in ordered
    ]


def _judged_tasks(project: Project, filters: Filters) -> set[int]:
    return set(usable_judgements(project, filters).values_list("assignment__task_id", flat=True))


def _model_pairs(
    feedback: dict[int, VariantFeedback], variants: dict[int, Variant], tasks: set[int]
) -> list[PreferencePair]:
    by_task: dict[int, list[int]] = defaultdict(list)
    for variant_id in sorted(feedback):
        if variant_id in variants and variants[variant_id].task_id in tasks:
            by_task[variants[variant_id].task_id].append(variant_id)
    pairs = []
    for ids in by_task.values():
        ordered = [
            (a, b) if feedback[a].reward > feedback[b].reward else (b, a)
            for a, b in combinations(ids, 2)
            if feedback[a].reward != feedback[b].reward
        ]
        pairs += _weighted(ordered, variants)
    return pairs


def training_data(
    project: Project,
    method: str,
    source: str,
    version: RewardModelVersion | None,
    filters: Filters,
) -> list[EditExample] | list[PreferencePair]:
    """What train_editor takes for the method; refuses too little of it, naming the need."""
    if method == "dpo":
        data: list = preference_pairs(project, source, version, filters)
        unit = "chosen/rejected pairs"
    else:
        data = edit_examples(project, method, source, version, filters)
        unit = "judged variants"
        if method == "multireward" and any(not e.aspects for e in data):
            raise NotEnoughFeedback(
                "multi-reward conditioning needs the three aspect scores of every variant; "
                "use the human source or a reward model with aspect heads (fine or cbm)"
            )
    needed = settings.FINETUNE_MIN_EXAMPLES
    if len(data) < needed:
        raise NotEnoughFeedback(
            f"{method} needs at least {needed} {unit} on train-split tasks; found {len(data)}. "
            "Collect more judgements, use a reward model as the reward source, or lower "
            "FINETUNE_MIN_EXAMPLES."
        )
    return data
