"""Seeded generator of short arithmetic word problems in the GSM8K style.

A problem states a starting count and one or more changes ("buys 27 more", "gives 15 away") and asks
for the final count. The solution writes one equation per change, then the final answer in the HEX
answer format, so the toy model learns the layout LLaDA is prompted for,
`<reasoning>...</reasoning><answer>\\boxed{N}</answer>`:

    question:  Mia has 34 apples. She buys 27 more. She gives 15 away.
               How many apples does Mia have?
    answer:    34+27=61
               61-15=46</reasoning><answer>\\boxed{46}</answer>

The opening `<reasoning>` is not part of the answer: prompts end with it as a prefill.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

NAMES = {
    "Mia": "She",
    "Ava": "She",
    "Zoe": "She",
    "Ivy": "She",
    "Amy": "She",
    "Kim": "She",
    "Leo": "He",
    "Sam": "He",
    "Max": "He",
    "Eli": "He",
    "Ben": "He",
    "Tom": "He",
}
ITEMS = [
    "apples",
    "pens",
    "coins",
    "books",
    "cards",
    "shells",
    "stickers",
    "marbles",
    "cookies",
    "stamps",
]
ADD_PHRASES = ["buys {n} more", "finds {n} more", "gets {n} more", "wins {n} more"]
SUB_PHRASES = ["gives {n} away", "loses {n}", "sells {n}", "uses {n}"]

TEST_SEED = 1234  # seed of the shipped test split, data/toy/test.jsonl

ANSWER_OPEN = "<reasoning>"
ANSWER_CLOSE = "</reasoning><answer>\\boxed{{{answer}}}</answer>"


@dataclasses.dataclass(frozen=True)
class Difficulty:
    """Knobs of the generator: how many changes a problem has and how large the numbers are.

    The starting count is drawn from [min_operand, max_operand] and each change from
    [min_change, max_change].
    """

    min_steps: int = 1
    max_steps: int = 2
    min_operand: int = 10
    max_operand: int = 99
    min_change: int = 10
    max_change: int = 99

    def __post_init__(self):
        if not 1 <= self.min_steps <= self.max_steps:
            raise ValueError(
                f"invalid step range {self.min_steps}..{self.max_steps}: need 1 <= min <= max"
            )
        for name, low, high in (
            ("operand", self.min_operand, self.max_operand),
            ("change", self.min_change, self.max_change),
        ):
            if not 0 <= low <= high:
                raise ValueError(f"invalid {name} range {low}..{high}: need 0 <= min <= max")


@dataclasses.dataclass(frozen=True)
class Problem:
    question: str
    solution: str  # the equations, one per line
    answer: int

    @property
    def target(self) -> str:
        """The answer text the model learns to produce after the `<reasoning>` prefill."""
        return self.solution + ANSWER_CLOSE.format(answer=self.answer)


def make_problem(rng: random.Random, difficulty: Difficulty = Difficulty()) -> Problem:
    """Draw one problem; running totals never go below zero."""
    name = rng.choice(sorted(NAMES))
    pronoun = NAMES[name]
    item = rng.choice(ITEMS)
    total = rng.randint(difficulty.min_operand, difficulty.max_operand)
    sentences = [f"{name} has {total} {item}."]
    equations = []
    for _ in range(rng.randint(difficulty.min_steps, difficulty.max_steps)):
        amount = rng.randint(difficulty.min_change, difficulty.max_change)
        subtract = amount <= total and rng.random() < 0.5
        phrase = rng.choice(SUB_PHRASES if subtract else ADD_PHRASES)
        new_total = total - amount if subtract else total + amount
        equations.append(f"{total}{'-' if subtract else '+'}{amount}={new_total}")
        sentences.append(f"{pronoun} {phrase.format(n=amount)}.")
        total = new_total
    sentences.append(f"How many {item} does {name} have?")
    return Problem(" ".join(sentences), "\n".join(equations), total)


def make_problems(
    n: int, seed: int, difficulty: Difficulty = Difficulty(), exclude: set[str] | None = None
) -> list[Problem]:
    """Draw `n` distinct problems from a seeded stream, skipping questions in `exclude`."""
    rng = random.Random(seed)
    seen = set(exclude or ())
    problems = []
    while len(problems) < n:
        problem = make_problem(rng, difficulty)
        if problem.question not in seen:
            seen.add(problem.question)
            problems.append(problem)
    return problems


def write_split(problems: list[Problem], path: Path) -> None:
    """Write problems as JSON lines with the fields the dataset loader reads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for index, problem in enumerate(problems):
            row = {
                "id": f"toy-{index:04d}",
                "question": problem.question,
                "solution": problem.solution,
                "answer": str(problem.answer),
            }
            f.write(json.dumps(row) + "\n")
