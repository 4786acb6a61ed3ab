"""Per-task answer formats and the public `extract`, `grade` and `vote` calls.

Each answer kind ("gsm8k", "toy", "math", "mc") registers an `AnswerFormat`: an extractor that
returns an `Answer` or None, a key function for gold strings, and a match check. Dataset names map
to kinds through `TASK_ALIASES`, so `extract("arc_challenge", text)` uses the multiple-choice
format. A new task registers its own format with `register_format`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from hexlab.answers.extract import Answer, extract_choice, extract_math, extract_number
from hexlab.answers.keys import label_key, math_equivalent, math_key, number_key
from hexlab.answers.voting import VoteResult, vote_keys


@dataclasses.dataclass(frozen=True)
class AnswerFormat:
    """How one kind of task reads, keys and grades answers.

    Attributes:
        extract: output text (and optional option labels) to an `Answer`, or None.
        gold_key: gold string to its vote key, or None when the gold is not a valid answer.
        matches: (answer text, gold) to whether the answer is correct.
        uses_labels: whether `extract` accepts option labels (multiple choice only).
    """

    extract: Callable[..., Answer | None]
    gold_key: Callable[[str], str | None]
    matches: Callable[[str, str], bool]
    uses_labels: bool = False


FORMATS: dict[str, AnswerFormat] = {}

TASK_ALIASES = {
    "gsm8k": "gsm8k",
    "toy": "toy",
    "math": "math",
    "math500": "math",
    "mc": "mc",
    "arc": "mc",
    "arc_challenge": "mc",
    "truthfulqa": "mc",
}


def register_format(kind: str, answer_format: AnswerFormat) -> None:
    """Register `answer_format` under task kind `kind` (and as its own alias)."""
    FORMATS[kind] = answer_format
    TASK_ALIASES.setdefault(kind, kind)


def task_kind(task: str) -> str:
    """Map a task or dataset name to its answer kind; raise ValueError for unknown names."""
    kind = TASK_ALIASES.get(task.lower())
    if kind is None or kind not in FORMATS:
        raise ValueError(f"unknown task {task!r}: use one of {', '.join(sorted(TASK_ALIASES))}")
    return kind


def _required_gold_key(gold_key: Callable[[str], str | None], gold: str) -> str:
    key = gold_key(gold)
    if key is None:
        raise ValueError(f"gold answer {gold!r} is not a valid answer for this task")
    return key


def _keys_match(key_of: Callable[[str], str | None]) -> Callable[[str, str], bool]:
    """Build a match check that compares the vote keys of an answer and its gold."""

    def matches(answer: str, gold: str) -> bool:
        answer_key = key_of(answer)
        return answer_key is not None and answer_key == _required_gold_key(key_of, gold)

    return matches


_NUMBERS = AnswerFormat(extract_number, number_key, _keys_match(number_key))
register_format("gsm8k", _NUMBERS)
register_format("toy", _NUMBERS)
register_format("math", AnswerFormat(extract_math, math_key, math_equivalent))
register_format(
    "mc", AnswerFormat(extract_choice, label_key, _keys_match(label_key), uses_labels=True)
)


def _format_for(task: str, labels: Sequence[str] | None) -> AnswerFormat:
    answer_format = FORMATS[task_kind(task)]
    if labels and not answer_format.uses_labels:
        raise ValueError(f"task {task!r} has no option labels; pass labels=None")
    return answer_format


def extract(task: str, output: str, labels: Sequence[str] | None = None) -> Answer | None:
    """Parse one path's output for `task`; None when it contains no answer.

    `labels` limits multiple-choice answers to the question's option labels.
    """
    answer_format = _format_for(task, labels)
    if answer_format.uses_labels:
        return answer_format.extract(output, labels)
    return answer_format.extract(output)


def is_correct(task: str, answer: Answer | str | None, gold: str) -> bool:
    """Grade an already extracted answer (or its display text) against `gold`; None is wrong."""
    if answer is None:
        return False
    text = answer.text if isinstance(answer, Answer) else answer
    return FORMATS[task_kind(task)].matches(text, gold)


def grade(task: str, output: str, gold: str, labels: Sequence[str] | None = None) -> bool:
    """Tell whether the answer parsed from `output` matches `gold`; no answer is wrong."""
    return is_correct(task, extract(task, output, labels), gold)


def vote_outputs(
    task: str,
    outputs: Sequence[str],
    rule: str = "first",
    nlls: Sequence[float] | None = None,
    seed: int = 0,
    labels: Sequence[str] | None = None,
) -> tuple[Answer | None, VoteResult]:
    """Parse every path and vote; return the winning path's `Answer` and the full result."""
    answers = [extract(task, output, labels) for output in outputs]
    result = vote_keys([a.key if a else None for a in answers], rule=rule, nlls=nlls, seed=seed)
    winner = answers[result.first_index] if result.first_index is not None else None
    return winner, result


def vote(
    task: str,
    outputs: Sequence[str],
    rule: str = "first",
    nlls: Sequence[float] | None = None,
    seed: int = 0,
    labels: Sequence[str] | None = None,
) -> tuple[str | None, bool]:
    """Majority-vote the paths of one question.

    Returns the winning answer's display text (the first path's form of the winning key; None
    when no path has an answer) and whether the top count was shared.
    """
    winner, result = vote_outputs(task, outputs, rule=rule, nlls=nlls, seed=seed, labels=labels)
    return (winner.text if winner else None), result.tie
