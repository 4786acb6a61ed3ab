"""Canonical vote keys: equivalent answers map to the same string, so they vote together.

- Numbers (GSM8K, toy): "1,000", "1000" and "1000.00" all give "1000"; "0.50" gives "0.5".
- MATH: the answer is parsed by math-verify into a sympy object and simplified, so "\\frac{1}{2}",
  "0.5" and "\\dfrac12" all give "1/2". Answers that math-verify cannot parse fall back to their
  LaTeX with spacing and sizing commands removed.
- Multiple choice: the option label itself ("B", or "2" for ARC's digit labels).

`math_equivalent` is the grading check for MATH: key equality first, then math-verify's `verify`,
which also accepts forms that simplify to different strings (for example "50" and "50\\%").
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import signal
import threading
from decimal import Decimal, InvalidOperation
from fractions import Fraction

logger = logging.getLogger(__name__)

# Seconds allowed for one math-verify parse, one sympy simplify, and one verify call. MATH answers
# are short, and these calls finish in milliseconds unless sympy hits a pathological expression.
MATH_TIMEOUT_S = 3


class MathTimeout(Exception):
    """A sympy or math-verify call ran past `MATH_TIMEOUT_S`."""


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Raise MathTimeout after `seconds` of wall-clock time.

    NOTE: the limit uses SIGALRM, which only the main thread can receive. In other threads the
    block runs without a limit.
    """
    if not _in_main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def on_alarm(signum, frame):
        raise MathTimeout(f"timed out after {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# numbers ------------------------------------------------------------------------------------------


def number_key(text: str) -> str | None:
    """Return the canonical form of a decimal number or simple fraction, or None if not one.

    Commas are dropped, trailing zeros after the point are dropped, and an exact fraction "3/4"
    becomes "0.75"; a fraction without a finite decimal stays "1/3".
    """
    cleaned = text.strip().replace(",", "").replace("\u2212", "-")
    try:
        value = Fraction(cleaned) if "/" in cleaned else Fraction(Decimal(cleaned))
    except (InvalidOperation, ValueError, ZeroDivisionError):
        return None
    return _format_fraction(value)


def _format_fraction(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    denominator = value.denominator
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    if denominator != 1:
        return f"{value.numerator}/{value.denominator}"
    decimal = Decimal(value.numerator) / Decimal(value.denominator)
    return format(decimal.normalize(), "f")


# multiple choice ----------------------------------------------------------------------------------


def label_key(text: str) -> str | None:
    """Return an option label ("A".."Z" or "1".."9") with surrounding space removed, else None."""
    label = text.strip()
    if re.fullmatch(r"[A-Z]|[1-9]", label):
        return label
    return None


# MATH ---------------------------------------------------------------------------------------------

# LaTeX that changes how an answer looks but not its value.
_COSMETIC_LATEX = [
    (re.compile(r"\\(?:left|right|displaystyle)(?![A-Za-z])|\\[!,;:]"), ""),
    (re.compile(r"\\[dt]frac"), r"\\frac"),
    (re.compile(r"\\?%"), ""),
    (re.compile(r"\\\$|\$"), ""),
    (re.compile(r"\^\{?\\circ\}?"), ""),
    (re.compile(r"\s+"), ""),
]


def normalize_latex(text: str) -> str:
    """Remove sizing, spacing, percent, dollar and degree marks and all whitespace."""
    normalized = text.strip().rstrip(".")
    for pattern, replacement in _COSMETIC_LATEX:
        normalized = pattern.sub(replacement, normalized)
    return normalized


@functools.lru_cache(maxsize=65536)
def parse_math(text: str):
    """Parse a LaTeX answer with math-verify; return its list of parsed forms, [] on failure."""
    from math_verify import parse

    timeout = MATH_TIMEOUT_S if _in_main_thread() else None
    # math-verify reads "50\%" as 50/100, while MATH graders treat "50\%" and "50" as one answer.
    without_percent = re.sub(r"\\?%", "", text)
    try:
        return parse(f"${without_percent}$", parsing_timeout=timeout)
    except Exception as error:  # math-verify and sympy raise many exception types on bad LaTeX
        logger.debug("math-verify failed to parse %r: %s", text, error)
        return []


@functools.lru_cache(maxsize=65536)
def math_key(text: str) -> str | None:
    """Return the vote key of a MATH answer, or None when `text` is empty."""
    if not normalize_latex(text):
        return None
    parsed = parse_math(text)
    if parsed and not isinstance(parsed[0], str):
        try:
            with _time_limit(MATH_TIMEOUT_S):
                import sympy

                value = parsed[0]
                # "x = 5" votes with "5": math-verify grades them equal, so the keys agree too.
                if isinstance(value, sympy.Eq) and isinstance(value.lhs, sympy.Symbol):
                    value = value.rhs
                return str(sympy.simplify(value))
        except Exception as error:  # includes MathTimeout and sympy's own failures
            logger.debug("sympy failed to simplify %r: %s", text, error)
    return normalize_latex(text)


def math_equivalent(answer: str, gold: str) -> bool:
    """Tell whether a MATH answer equals the gold answer (key match, then math-verify)."""
    if math_key(answer) == math_key(gold):
        return True
    gold_parsed, answer_parsed = parse_math(gold), parse_math(answer)
    if not gold_parsed or not answer_parsed:
        return False
    from math_verify import verify

    timeout = MATH_TIMEOUT_S if _in_main_thread() else None
    try:
        return bool(verify(gold_parsed, answer_parsed, timeout_seconds=timeout))
    except Exception as error:  # a timeout or a sympy failure counts as "not shown equal"
        logger.debug("math-verify failed on %r vs gold %r: %s", answer, gold, error)
        return False
