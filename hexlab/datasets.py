"""Evaluation datasets as lists of `Example`: built-in benchmarks, local files, Hub datasets.

`load_dataset(name_or_path)` accepts:

- a built-in name: gsm8k (1,319 questions), math500 (500), arc_challenge (1,172), truthfulqa
  (817, MC1 from mc_task.json) or toy (data/toy/test.jsonl). These read the data folder at the
  repository root, or the folder named by the HEXLAB_DATA environment variable.
- a local .jsonl, .json (one array) or .parquet file with named question and answer fields
  (options question_field, answer_field, task, id_field). Rows with a "choices" field are read as
  multiple choice; the 684-question TruthfulQA variant (question, choices, label) loads this way.
- a Hugging Face dataset name such as "EleutherAI/truthful_qa_mc" (options config, split and the
  field options above). This needs the `datasets` package and network access.

Multiple-choice questions carry their options in the question text ("Options:", one "A. text"
line per option, then "Choose ONE letter."), as the HEX prompts expect.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hexlab.answers import number_key, task_kind

logger = logging.getLogger(__name__)

TASKS = ("gsm8k", "math", "mc", "toy")

# The seed that letters TruthfulQA's MC1 options; mc_task.json lists the correct option first.
TRUTHFULQA_SEED = 42

FIELD_OPTIONS = ("question_field", "answer_field", "task", "id_field")
HUB_OPTIONS = (*FIELD_OPTIONS, "config", "split")

# Defaults for Hub datasets whose layout is known; the user's options override them.
HUB_DEFAULTS: dict[str, dict[str, str]] = {
    "openai/gsm8k": {"task": "gsm8k", "config": "main", "split": "test"},
    "huggingfaceh4/math-500": {"task": "math", "question_field": "problem", "split": "test"},
    "allenai/ai2_arc": {"task": "mc", "config": "ARC-Challenge", "split": "test"},
    "eleutherai/truthful_qa_mc": {"task": "mc", "config": "multiple_choice", "split": "validation"},
}


@dataclasses.dataclass(frozen=True)
class Example:
    """One evaluation question.

    Attributes:
        id: stable identifier (the dataset's own id, or "<dataset>/<row index>").
        task: answer kind, one of "gsm8k", "math", "mc", "toy".
        question: the full user-facing question; multiple choice includes the option lines.
        gold: reference answer (GSM8K: integer without commas; MC: the option label).
        choices: option texts, multiple choice only.
        labels: option labels ("A".."E", or ARC's "1".."4"), multiple choice only.
        metadata: the row's remaining fields (subject, level, solution, ...).
    """

    id: str
    task: str
    question: str
    gold: str
    choices: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict, hash=False)


@dataclasses.dataclass(frozen=True)
class RowFields:
    """Names of the fields with the question, answer and id, and the task kind (None: infer)."""

    question_field: str | None = None
    answer_field: str = "answer"
    task: str | None = None
    id_field: str = "id"


# data folder --------------------------------------------------------------------------------------


def data_dir() -> Path:
    """Return the data folder: $HEXLAB_DATA, else `data/` at the repository root."""
    override = os.environ.get("HEXLAB_DATA")
    if override:
        folder = Path(override).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"HEXLAB_DATA={override!r} is not a folder")
        return folder
    folder = Path(__file__).resolve().parents[1] / "data"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"data folder {folder} not found; set HEXLAB_DATA to the folder that contains "
            f"gsm8k/, math500/, arc_challenge/ and truthfulqa/"
        )
    return folder


def _data_file(relative: str) -> Path:
    path = data_dir() / relative
    if not path.is_file():
        raise FileNotFoundError(f"dataset file {path} not found; set HEXLAB_DATA or restore it")
    return path


# row readers: each yields (location, row) so errors can name the file and line -------------------


def _iter_jsonl(path: Path) -> Iterator[tuple[str, dict]]:
    with path.open(encoding="utf-8-sig") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}, line {line_number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{where}: invalid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
            yield where, row


def _iter_json_array(path: Path) -> Iterator[tuple[str, dict]]:
    try:
        rows = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}, line {error.lineno}: invalid JSON ({error.msg})") from None
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a JSON array of objects")
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"{path}, item {index}: expected a JSON object")
        yield f"{path}, item {index}", row


def _iter_parquet(path: Path) -> Iterator[tuple[str, dict]]:
    import pyarrow.parquet as pq

    for index, row in enumerate(pq.read_table(path).to_pylist()):
        yield f"{path}, row {index}", row


def _iter_file(path: Path) -> Iterator[tuple[str, dict]]:
    readers = {".jsonl": _iter_jsonl, ".json": _iter_json_array, ".parquet": _iter_parquet}
    if path.suffix.lower() not in readers:
        raise ValueError(f"unsupported file type {path.suffix!r} for {path}: use {sorted(readers)}")
    return readers[path.suffix.lower()](path)


def _take(rows: Iterator[tuple[str, dict]], limit: int | None) -> Iterator[tuple[int, str, dict]]:
    for index, (where, row) in enumerate(rows):
        if limit is not None and index >= limit:
            return
        yield index, where, row


# row conversion -----------------------------------------------------------------------------------


def _field(row: dict, name: str, where: str) -> Any:
    if name not in row or row[name] is None:
        present = ", ".join(sorted(row)) or "none"
        raise ValueError(f"{where}: missing field {name!r} (fields present: {present})")
    return row[name]


def _parse_choices(raw: Any, where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Return (texts, labels) from a list of strings, a list of {text, label}, or {text: [...]}."""
    if isinstance(raw, dict) and "text" in raw:
        texts = list(raw["text"])
        labels = list(raw.get("label") or [])
    elif isinstance(raw, list) and raw and all(isinstance(item, dict) for item in raw):
        texts = [str(_field(item, "text", where)) for item in raw]
        labels = [str(_field(item, "label", where)) for item in raw]
    elif isinstance(raw, list) and raw:
        texts, labels = [str(item) for item in raw], []
    else:
        raise ValueError(f"{where}: field 'choices' must be a non-empty list, got {raw!r}")
    labels = labels or [chr(ord("A") + i) for i in range(len(texts))]
    if len(labels) != len(texts) or len(texts) > 26:
        raise ValueError(f"{where}: {len(texts)} choices with {len(labels)} labels")
    return tuple(str(text) for text in texts), tuple(str(label) for label in labels)


def format_choice_question(stem: str, choices: tuple[str, ...], labels: tuple[str, ...]) -> str:
    """Write a multiple-choice question with its "Options:" lines and the letter request."""
    options = "\n".join(f"{label}. {text}" for label, text in zip(labels, choices, strict=True))
    return f"{stem.strip()}\nOptions:\n{options}\nChoose ONE letter."


def _choice_gold(row: dict, fields: RowFields, labels: tuple[str, ...], choices, where) -> str:
    """Read the gold label from answerKey, label (index or label) or the answer field."""
    for name in ("answerKey", "label", fields.answer_field):
        if row.get(name) is None:
            continue
        value = row[name]
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(labels):
            return labels[value]
        if str(value).strip() in labels:
            return str(value).strip()
        if str(value) in choices:
            return labels[choices.index(str(value))]
        raise ValueError(f"{where}: gold {value!r} in field {name!r} is not one of {labels}")
    present = ", ".join(sorted(row))
    raise ValueError(
        f"{where}: missing gold answer: no field answerKey, label or {fields.answer_field!r} "
        f"(fields present: {present})"
    )


def _numeric_gold(value: Any, where: str) -> tuple[str, str | None]:
    """Return (gold, solution) for a GSM8K-style answer: the number after "####", no commas."""
    text = str(value)
    solution = None
    if "####" in text:
        solution, text = text.rsplit("####", 1)
    gold = text.strip().replace(",", "")
    if number_key(gold) is None:
        raise ValueError(f"{where}: gold answer {text.strip()!r} is not a number")
    return gold, solution.strip() if solution is not None else None


def _row_example(row: dict, where: str, default_id: str, fields: RowFields) -> Example:
    """Convert one row to an `Example`; raise ValueError naming `where` on a malformed row."""
    question_field = fields.question_field or ("question" if "question" in row else "problem")
    question = _field(row, question_field, where)
    raw_choices = row.get("choices")
    if isinstance(question, dict):  # ARC's layout: {"stem": ..., "choices": [...]}
        raw_choices = question.get("choices", raw_choices)
        question = _field(question, "stem", where)
    if fields.task:
        task = task_kind(fields.task)
    elif raw_choices is not None:
        task = "mc"
    else:
        raise ValueError(f"{where}: cannot tell the task; pass task= (one of {', '.join(TASKS)})")

    used = {question_field, fields.answer_field, fields.id_field}
    if task == "mc":
        used |= {"choices", "answerKey", "label"}
    metadata = {key: value for key, value in row.items() if key not in used}
    choices: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    if task == "mc":
        choices, labels = _parse_choices(_field({"choices": raw_choices}, "choices", where), where)
        gold = _choice_gold(row, fields, labels, choices, where)
        question = format_choice_question(str(question), choices, labels)
    elif task in ("gsm8k", "toy"):
        gold, solution = _numeric_gold(_field(row, fields.answer_field, where), where)
        if solution is not None:
            metadata["solution"] = solution
    else:
        gold = str(_field(row, fields.answer_field, where)).strip()
    example_id = str(row.get(fields.id_field) or default_id)
    return Example(example_id, task, str(question), gold, choices, labels, metadata)


# built-in benchmarks ------------------------------------------------------------------------------


def _load_rows(rows, limit: int | None, prefix: str, fields: RowFields) -> list[Example]:
    return [
        _row_example(row, where, f"{prefix}/{index}", fields)
        for index, where, row in _take(rows, limit)
    ]


def _load_truthfulqa(limit: int | None, seed: int = TRUTHFULQA_SEED) -> list[Example]:
    """Load the 817 MC1 questions of mc_task.json with options shuffled by one seeded RNG.

    The RNG runs over the questions in file order, so a `limit` keeps the same option order
    for the questions it loads.
    """
    rng = random.Random(seed)
    examples = []
    for index, where, row in _take(_iter_json_array(_data_file("truthfulqa/mc_task.json")), limit):
        targets = _field(row, "mc1_targets", where)
        options = list(targets.items())
        if sum(1 for _, correct in options if correct == 1) != 1:
            raise ValueError(f"{where}: mc1_targets must mark exactly one option with 1")
        rng.shuffle(options)
        choices = tuple(text for text, _ in options)
        labels = tuple(chr(ord("A") + i) for i in range(len(choices)))
        gold = labels[[correct for _, correct in options].index(1)]
        question = format_choice_question(str(_field(row, "question", where)), choices, labels)
        metadata = {"mc2_targets": row.get("mc2_targets")}
        examples.append(
            Example(f"truthfulqa/{index}", "mc", question, gold, choices, labels, metadata)
        )
    return examples


BUILTIN_FILES: dict[str, tuple[str, RowFields]] = {
    "gsm8k": ("gsm8k/test.jsonl", RowFields(task="gsm8k")),
    "math500": ("math500/test.jsonl", RowFields("problem", task="math", id_field="unique_id")),
    "arc_challenge": ("arc_challenge/ARC-Challenge-Test.jsonl", RowFields(task="mc")),
    "toy": ("toy/test.jsonl", RowFields(task="toy")),
}
BUILTIN_NAMES = (*BUILTIN_FILES, "truthfulqa")


def _load_builtin(name: str, limit: int | None, options: dict) -> list[Example]:
    if name == "truthfulqa":
        _check_options(name, options, ("seed",))
        return _load_truthfulqa(limit, **options)
    _check_options(name, options, ())
    relative, fields = BUILTIN_FILES[name]
    return _load_rows(_iter_jsonl(_data_file(relative)), limit, name, fields)


# local files and the Hub --------------------------------------------------------------------------


def _check_options(source: str, options: dict, accepted: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        allowed = ", ".join(accepted) or "none"
        raise ValueError(f"unknown option(s) {unknown} for {source}; accepted: {allowed}")


def _row_fields(options: dict) -> RowFields:
    defaults = RowFields()
    return RowFields(
        question_field=options.get("question_field"),
        answer_field=options.get("answer_field", defaults.answer_field),
        task=options.get("task"),
        id_field=options.get("id_field", defaults.id_field),
    )


def _load_file(path: Path, limit: int | None, options: dict) -> list[Example]:
    _check_options(str(path), options, FIELD_OPTIONS)
    return _load_rows(_iter_file(path), limit, path.stem, _row_fields(options))


def _pick_split(loaded, name: str):
    """Pick "test", else "validation", else the only split of a DatasetDict."""
    splits = list(loaded)
    for split in ("test", "validation"):
        if split in loaded:
            return loaded[split], split
    if len(splits) == 1:
        return loaded[splits[0]], splits[0]
    raise ValueError(f"{name} has splits {splits}; pass split=")


def _load_hub(name: str, limit: int | None, options: dict) -> list[Example]:
    _check_options(name, options, HUB_OPTIONS)
    options = {**HUB_DEFAULTS.get(name.lower(), {}), **options}
    try:
        import datasets
    except ImportError:
        raise ImportError(
            f"loading the Hugging Face dataset {name!r} needs the datasets package "
            f"(pip install datasets); a local .jsonl or .parquet path works without it"
        ) from None
    try:
        loaded = datasets.load_dataset(name, options.get("config"), split=options.get("split"))
    except (OSError, ValueError) as error:  # offline, unknown name, or unknown config/split
        raise RuntimeError(
            f"failed to load {name!r} from the Hugging Face Hub: {error}. Check the name, "
            f"config and split and that the machine is online, or pass a local file"
        ) from error
    split = options.get("split")
    if split is None:
        loaded, split = _pick_split(loaded, name)
    rows = ((f"{name} ({split}), row {i}", row) for i, row in enumerate(loaded))
    return _load_rows(rows, limit, name, _row_fields(options))


# public API ---------------------------------------------------------------------------------------


def load_dataset(name_or_path: str | Path, limit: int | None = None, **options) -> list[Example]:
    """Load a built-in benchmark, a local file or a Hub dataset as a list of `Example`.

    Args:
        name_or_path: one of `BUILTIN_NAMES`, a .jsonl/.json/.parquet path, or a Hub name.
        limit: keep only the first `limit` rows (file order).
        **options: truthfulqa takes seed; files take question_field, answer_field, task and
            id_field; Hub names take those and config, split. Unknown options raise ValueError.
    """
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer or None, got {limit!r}")
    name = str(name_or_path)
    path = Path(name).expanduser()
    if name.lower() in BUILTIN_NAMES:
        examples = _load_builtin(name.lower(), limit, options)
    elif path.is_file():
        examples = _load_file(path, limit, options)
    elif path.suffix.lower() in (".jsonl", ".json", ".parquet"):
        raise FileNotFoundError(f"dataset file {path} not found")
    elif "/" in name:
        examples = _load_hub(name, limit, options)
    else:
        raise ValueError(
            f"unknown dataset {name!r}: known names are {', '.join(BUILTIN_NAMES)}; "
            f"a local .jsonl or .parquet path or a Hugging Face dataset name also works"
        )
    logger.info("loaded %d examples from %s (hash %s)", len(examples), name, dataset_hash(examples))
    return examples


def dataset_hash(examples: list[Example]) -> str:
    """Return a 16-hex-digit SHA-256 digest of the examples' fields, stable across runs."""
    rows = [dataclasses.asdict(example) for example in examples]
    text = json.dumps(rows, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
