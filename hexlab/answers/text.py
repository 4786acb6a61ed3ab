"""Text clean-up shared by every answer parser: special tokens, boxed spans, collapse.

A decoded answer window still holds the tokenizer's special tokens (`<|eot_id|>`, `<|endoftext|>`,
`<|mdm_mask|>`, `<|im_end|>`), so every parser strips them before it reads the text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

# Any `<|name|>` token: LLaDA's end of text, end of turn and mask tokens, Qwen's `<|im_end|>`.
SPECIAL_TOKEN_RE = re.compile(r"<\|[^<>|]*\|>")

# `\boxed` and `\fbox` both mark a final answer in LaTeX; `\boxed 5` (no braces) is legal too.
BOX_COMMAND_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")

# Characters that end an unbraced `\boxed 5` argument.
UNBRACED_END_RE = re.compile(r"[\s$]")

ANSWER_TAG_RE = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL)


def strip_special_tokens(text: str) -> str:
    """Remove every `<|...|>` token from decoded text."""
    return SPECIAL_TOKEN_RE.sub("", text)


def match_brace(text: str, start: int) -> int | None:
    """Return the index of the `}` that closes the `{` at `text[start]`, or None if unclosed.

    Escaped braces (`\\{`, `\\}`) do not count, so `\\boxed{\\{1, 2\\}}` closes at the last brace.
    """
    assert text[start] == "{", f"expected '{{' at index {start}, found {text[start]!r}"
    depth = 0
    index = start
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    return None


def boxed_contents(text: str) -> list[str]:
    """Return the argument of every `\\boxed`/`\\fbox` in `text`, in order of appearance.

    A braced argument is matched brace by brace, so `\\boxed{\\frac{1}{2}}` yields `\\frac{1}{2}`.
    An unclosed brace (a truncated generation) yields nothing for that box.
    """
    contents = []
    for match in BOX_COMMAND_RE.finditer(text):
        rest_start = match.end()
        stripped = text[rest_start:].lstrip()
        offset = rest_start + (len(text) - rest_start - len(stripped))
        if stripped.startswith("{"):
            end = match_brace(text, offset)
            if end is not None:
                contents.append(text[offset + 1 : end])
        elif offset > rest_start and stripped:
            # `\boxed 5`: the argument runs to the next space or dollar sign.
            end_match = UNBRACED_END_RE.search(stripped)
            contents.append(stripped[: end_match.start()] if end_match else stripped)
    return [content.strip() for content in contents]


def answer_tag_content(text: str) -> str | None:
    """Return the text inside the last `<answer>` tag, to its closing tag or the end of text."""
    matches = ANSWER_TAG_RE.findall(text)
    return matches[-1].strip() if matches else None


def is_collapsed(text: str) -> bool:
    """Tell whether a decoded answer window collapsed into end tokens.

    A path collapsed when its window, special tokens removed, holds nothing or only whitespace,
    so no parser can find an answer in it.
    """
    return strip_special_tokens(text).strip() == ""


def collapse_rate(texts: Iterable[str]) -> float:
    """Return the share of collapsed paths in `texts`, or NaN when `texts` is empty."""
    flags = [is_collapsed(text) for text in texts]
    return sum(flags) / len(flags) if flags else math.nan
