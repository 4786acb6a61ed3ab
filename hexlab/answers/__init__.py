"""Answer parsing, grading and voting for HEX paths.

>>> from hexlab.answers import extract, grade, vote
>>> extract("gsm8k", "so the total is \\\\boxed{1,000}.").key
'1000'
>>> vote("math500", ["\\\\boxed{\\\\frac{1}{2}}", "\\\\boxed{0.5}", "\\\\boxed{2}"])
('\\\\frac{1}{2}', False)
"""

from hexlab.answers.extract import Answer
from hexlab.answers.keys import math_equivalent, math_key, number_key
from hexlab.answers.tasks import (
    FORMATS,
    TASK_ALIASES,
    AnswerFormat,
    extract,
    grade,
    is_correct,
    register_format,
    task_kind,
    vote,
    vote_outputs,
)
from hexlab.answers.text import collapse_rate, is_collapsed, strip_special_tokens
from hexlab.answers.voting import TIE_RULES, VoteResult, tie_rate, vote_keys

__all__ = [
    "FORMATS",
    "TASK_ALIASES",
    "TIE_RULES",
    "Answer",
    "AnswerFormat",
    "VoteResult",
    "collapse_rate",
    "extract",
    "grade",
    "is_collapsed",
    "is_correct",
    "math_equivalent",
    "math_key",
    "number_key",
    "register_format",
    "strip_special_tokens",
    "task_kind",
    "tie_rate",
    "vote",
    "vote_keys",
    "vote_outputs",
]
