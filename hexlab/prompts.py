"""Zero-shot prompt templates and prompt encoding for HEX runs.

A prompt is one user message (task instruction, blank line, question) rendered through the
model's chat template, followed by the text "<reasoning>" as a prefill so that the model starts
inside the reasoning section. The GSM8K and MATH instruction is the one HEX used with
LLaDA-8B-Instruct; the multiple-choice instruction requests ONE option letter inside \\boxed{}.

A template is a string with a `{question}` placeholder. Only that placeholder is replaced, so the
LaTeX braces in "\\boxed{}" need no escaping. `template` arguments take a name from `TEMPLATES`
or such a string.
"""

from __future__ import annotations

import logging

from hexlab.datasets import Example

logger = logging.getLogger(__name__)

PLACEHOLDER = "{question}"
PREFILL = "<reasoning>"

# The answer skeleton the model is asked to fill; "<reasoning>" is also the prefill.
_FORMAT = (
    "Respond in the following format:\n"
    "<reasoning>\n"
    "Your reasoning here\n"
    "</reasoning>\n"
    "<answer>\n"
    "\\boxed{...}\n"
    "</answer>"
)

# The space before the newline matches the HEX prompt text token for token.
MATH_TEMPLATE = (
    "You are a math expert. You will be given a question to solve. Solve it step by step. "
    "Wrap the final answer in a \\boxed{}. \n" + _FORMAT + "\n\n" + PLACEHOLDER
)

CHOICE_TEMPLATE = (
    "You are an expert at answering multiple-choice questions. You will be given a question "
    "and its options. Think it through step by step, then pick the ONE correct option. Wrap "
    "the letter of that option in a \\boxed{}, for example \\boxed{A}. \n"
    + _FORMAT
    + "\n\n"
    + PLACEHOLDER
)

# The toy model is trained on bare questions (chat template and prefill included), so its user
# message is the question alone.
TOY_TEMPLATE = PLACEHOLDER

TEMPLATES = {
    "gsm8k": MATH_TEMPLATE,
    "math": MATH_TEMPLATE,
    "mc": CHOICE_TEMPLATE,
    "toy": TOY_TEMPLATE,
}


def resolve_template(example: Example, template: str | None = None) -> str:
    """Return the template text for `example`: its task's template, a named one, or `template`."""
    if template is None:
        if example.task not in TEMPLATES:
            raise ValueError(f"no template for task {example.task!r}; pass template=")
        return TEMPLATES[example.task]
    if template in TEMPLATES:
        return TEMPLATES[template]
    if PLACEHOLDER not in template:
        raise ValueError(
            f"template must be one of {', '.join(TEMPLATES)} or contain {PLACEHOLDER}; "
            f"got {template[:60]!r}"
        )
    return template


def render_user_message(example: Example, template: str | None = None) -> str:
    """Return the user message for `example`: the template with the question filled in."""
    return resolve_template(example, template).replace(PLACEHOLDER, example.question)


def build_prompt(
    example: Example, lm, template: str | None = None, prefill: str = PREFILL
) -> list[int]:
    """Encode the prompt of `example` for `lm` (a `hexlab.models.DiffusionLM`).

    Args:
        example: the question.
        lm: the model whose chat template and tokenizer encode the prompt.
        template: a name from `TEMPLATES`, a string with {question}, or None for the task's own.
        prefill: text after the chat template's assistant header; the toy model is trained with
            the same "<reasoning>" prefill as the HEX prompts.

    Returns:
        The prompt's token ids, chat template and prefill included.
    """
    return lm.encode_prompt(render_user_message(example, template), prefill=prefill)
