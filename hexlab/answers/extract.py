"""Answer extractors: one per answer kind, each returning an `Answer` or None for "no answer".

Every extractor strips special tokens first, then tries its rules in a fixed order and returns
the first rule's result; `Answer.rule` records which rule fired.

- Numbers (GSM8K, toy): the last `\\boxed{}` holding a number, the last `<answer>` tag, the first
  "#### N" (text after it is a run-on continuation), the last "answer is N" / "Answer: N", then
  the last number in the text.
- MATH: the last `\\boxed{}` or `\\fbox{}`, then the last `<answer>` tag. Never the whole text.
- Multiple choice: the last `\\boxed{}` that holds a bare label, the `<answer>` tag, the last
  "answer is X" / "Answer: X" / "X is correct" phrase, then a reply that is only a label. A
  label is never read from inside a word or from an article ("A cat").
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Sequence

from hexlab.answers.keys import math_key, number_key
from hexlab.answers.text import answer_tag_content, boxed_contents, strip_special_tokens


@dataclasses.dataclass(frozen=True)
class Answer:
    """One parsed answer: `text` for display, `key` for voting, `rule` naming the parser step."""

    text: str
    key: str
    rule: str


# numbers ------------------------------------------------------------------------------------------

# An integer or decimal with optional thousands commas and sign. The lookbehind keeps "16-3" from
# reading as -3 and keeps digits inside words ("x2", "H_2") and decimals from matching.
NUMBER_RE = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?!\d)")
HASH_MARKER_RE = re.compile(r"####\s*\\?\$?\s*(" + NUMBER_RE.pattern + ")")
NUMBER_PHRASE_RE = re.compile(
    r"(?i:\banswer\s*(?:is\b|:|=|would\s+be\b|will\s+be\b|should\s+be\b))[^\d\n]{0,12}?("
    + NUMBER_RE.pattern
    + ")"
)
# "\\frac{3}{4}", "\\frac34" and "-3/4"; the sign stays outside the captured digits.
FRACTION_RE = re.compile(r"(-?)(?:\\frac(?:\{(\d+)\}|(\d))(?:\{(\d+)\}|(\d))|(\d+)/(\d+))")
UNIT_TEXT_RE = re.compile(r"\\(?:text|mathrm|mbox)\s*\{[^{}]*\}")


def _clean_number_text(text: str) -> str:
    """Undo LaTeX number spacing: "10,\\!080" and "1\\,000" become "10,080" and "1000"."""
    text = text.replace("\\!", "").replace("{,}", ",").replace("\\,", "")
    return text.replace("\u2212", "-")


def _number_answer(number: str, rule: str) -> Answer | None:
    key = number_key(number)
    return Answer(text=key, key=key, rule=rule) if key is not None else None


def _number_in_fragment(fragment: str, rule: str) -> Answer | None:
    """Read the answer number of a boxed or tagged fragment such as "5 + 3 = 8 \\text{ apples}"."""
    value = _clean_number_text(fragment).rsplit("=", 1)[-1]
    value = UNIT_TEXT_RE.sub("", value).replace("\\$", "").replace("$", "").strip()
    fraction = FRACTION_RE.fullmatch(value.replace(" ", "").replace("\\dfrac", "\\frac"))
    if fraction:
        numerator = fraction[2] or fraction[3] or fraction[6]
        denominator = fraction[4] or fraction[5] or fraction[7]
        return _number_answer(f"{fraction[1]}{numerator}/{denominator}", rule)
    numbers = NUMBER_RE.findall(value)
    return _number_answer(numbers[-1], rule) if numbers else None


def extract_number(text: str) -> Answer | None:
    """Extract a GSM8K-style numeric answer, or None when the text holds no number."""
    text = _clean_number_text(strip_special_tokens(text))
    for content in reversed(boxed_contents(text)):
        answer = _number_in_fragment(content, "boxed")
        if answer is not None:
            return answer
    tag = answer_tag_content(text)
    if tag:
        answer = _number_in_fragment(tag, "answer_tag")
        if answer is not None:
            return answer
    marker = HASH_MARKER_RE.search(text)
    if marker:
        return _number_answer(marker[1], "hash_marker")
    phrases = NUMBER_PHRASE_RE.findall(text)
    if phrases:
        return _number_answer(phrases[-1], "answer_phrase")
    numbers = NUMBER_RE.findall(text)
    return _number_answer(numbers[-1], "last_number") if numbers else None


# MATH ---------------------------------------------------------------------------------------------


def _math_answer(content: str, rule: str) -> Answer | None:
    display = content.strip().strip("$").strip().rstrip(".").strip()
    key = math_key(display) if display else None
    return Answer(text=display, key=key, rule=rule) if key else None


def extract_math(text: str) -> Answer | None:
    """Extract the last boxed MATH answer, else the `<answer>` tag; None when neither exists."""
    text = strip_special_tokens(text)
    for content in reversed(boxed_contents(text)):
        answer = _math_answer(content, "boxed")
        if answer is not None:
            return answer
    tag = answer_tag_content(text)
    return _math_answer(tag, "answer_tag") if tag else None


# multiple choice ----------------------------------------------------------------------------------

DEFAULT_LABEL_RE = r"[A-Z]|[1-9]"
WRAPPER_RE = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox)\s*\{(.*)\}", re.DOTALL)


def _label_pattern(labels: tuple[str, ...] | None) -> str:
    if not labels:
        return DEFAULT_LABEL_RE
    return "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))


@functools.lru_cache(maxsize=64)
def _bare_label_re(labels: tuple[str, ...] | None, with_text: bool) -> re.Pattern:
    """Build the pattern of a bare label: "B", "(B)", "B.", "Option B", and with `with_text`
    also "B) text", "B. text" and "(B) text".

    A label followed by a space and a word with no punctuation ("A cat") never matches.
    """
    label = _label_pattern(labels)
    text = r"(?:\s.*)?" if with_text else ""
    return re.compile(
        r"(?:(?i:option|choice|answer)\s*:?\s*)?"
        rf"(?:[\(\[]\s*({label})\s*[\)\]]{text}|({label})(?:[.:)]{text})?)",
        re.DOTALL,
    )


@functools.lru_cache(maxsize=64)
def _phrase_re(labels: tuple[str, ...] | None) -> re.Pattern:
    """Build the pattern of "answer is X", "Answer: X", "best choice is X", "X is correct".

    Only the words are case-insensitive: the label must be upper case, so "answer is a" is no label.
    """
    label = _label_pattern(labels)
    stated = (
        r"(?i:\b(?:answer|choice|option)\s*(?:is\b|:|=|would\s+be\b|should\s+be\b|will\s+be\b))"
        rf"[:*_\s]*(?:(?i:option|choice)\s+)?[\(\[]?({label})[\)\]]?(?![\w'])"
    )
    confirmed = (
        rf"(?<![\w'])[\(\[]?({label})[\)\]]?\s+(?i:is\s+(?:the\s+)?(?:correct|right|best)\b)"
    )
    return re.compile(f"{stated}|{confirmed}")


def _bare_label(fragment: str, labels: tuple[str, ...] | None, with_text: bool) -> str | None:
    """Return the label when `fragment` is a bare label (see `_bare_label_re`), else None."""
    fragment = fragment.strip().strip("$*_ ").strip()
    wrapped = WRAPPER_RE.fullmatch(fragment)
    while wrapped:
        fragment = wrapped[1].strip().strip("*_ ")
        wrapped = WRAPPER_RE.fullmatch(fragment)
    match = _bare_label_re(labels, with_text).fullmatch(fragment)
    return (match[1] or match[2]) if match else None


def _choice_answer(label: str | None, rule: str) -> Answer | None:
    # The patterns only capture valid labels, so the label is its own key.
    return Answer(text=label, key=label, rule=rule) if label else None


def extract_choice(text: str, labels: Sequence[str] | None = None) -> Answer | None:
    """Extract an option label; `labels` limits the accepted labels (default A-Z and 1-9)."""
    text = strip_special_tokens(text)
    labels = tuple(labels) if labels else None
    for content in reversed(boxed_contents(text)):
        answer = _choice_answer(_bare_label(content, labels, with_text=True), "boxed")
        if answer is not None:
            return answer
    tag = answer_tag_content(text)
    if tag:
        answer = _choice_answer(_bare_label(tag, labels, with_text=True), "answer_tag")
        if answer is not None:
            return answer
    phrases = _phrase_re(labels).findall(text)
    if phrases:
        stated, confirmed = phrases[-1]
        return _choice_answer(stated or confirmed, "answer_phrase")
    # a whole reply counts only when it is the label alone, since "A. ..." may start a list
    return _choice_answer(_bare_label(text, labels, with_text=False), "bare_label")


__all__ = ["Answer", "extract_choice", "extract_math", "extract_number"]
