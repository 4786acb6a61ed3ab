"""Build a run directory from generations decoded elsewhere, graded and voted like our own runs.

Steps: read the input files (`hexlab.runs.import_formats`), merge the shards of each setting, join
questions to the dataset by their text with all whitespace removed, take golds from the dataset,
grade and vote with `hexlab.runs.aggregate`, and write config.json, paths.parquet, votes.parquet
and metrics.json. An imported run has no chunks and no trajectories.

Path ids follow `Setting.sort_key`: answer length, block sizes, steps, remasking (in
`hexlab.decode.REMASKING_RULES` order), temperature, seed, then source and path name. The vote's
tie rule ("first in path order") reads that order. A question that only some settings cover keeps
the paths it has, so its `n_paths` in votes.parquet is smaller.

Questions that match no dataset row are dropped and counted in metrics.json. More than
`max_unmatched` of them (a count, or a fraction of the distinct questions read when below 1;
default `DEFAULT_MAX_UNMATCHED`) raises ValueError, because that many misses means the wrong
dataset or edited question texts rather than a few stray rows.

NOTE: imported runs carry no per-path NLL, so `nll` is NaN and NLL-based selection is unavailable.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from hexlab.runs.aggregate import grade_texts, run_metrics, vote_table
from hexlab.runs.import_formats import (
    Generation,
    Setting,
    SourceFile,
    expand_inputs,
    read_source_file,
)
from hexlab.runs.store import CONFIG, METRICS, PATHS, VOTES, atomic_write_json, atomic_write_parquet

logger = logging.getLogger(__name__)

DEFAULT_MAX_UNMATCHED = 0.01
# Unmatched question texts listed in metrics.json and in errors, each cut to this many characters.
SHOWN_UNMATCHED = 5
SHOWN_CHARS = 80


@dataclasses.dataclass(frozen=True)
class ImportConfig:
    """What `hexlab import` reads: input files or folders (`PATH` or `NAME=PATH`) and the dataset.

    `max_unmatched` below 1 is a fraction of the distinct questions read, 1 or more a count.
    `model` names the model when the files do not, and must agree with them when they do.
    `task` is passed to `load_dataset` for a dataset file (built-in names know their task).
    """

    inputs: tuple[str, ...]
    dataset: str = "gsm8k"
    max_unmatched: float = DEFAULT_MAX_UNMATCHED
    model: str | None = None
    task: str | None = None

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ValueError("no input files: pass generation files or folders")
        check_max_unmatched(self.max_unmatched)


def check_max_unmatched(limit: float) -> None:
    """Raise ValueError unless `limit` is a fraction in [0, 1) or a whole count."""
    if limit < 0 or (limit >= 1 and limit != int(limit)):
        raise ValueError(
            f"invalid --max-unmatched {limit!r}: use a fraction in [0, 1), such as 0.02, or a "
            f"whole count, such as 5"
        )


@dataclasses.dataclass
class ImportedRun:
    """The four files of an imported run directory, in memory."""

    config: dict
    paths: pd.DataFrame
    votes: pd.DataFrame
    metrics: dict


def question_key(text: str) -> str:
    """Return the join key of a question: its text with all whitespace removed."""
    return "".join(text.split())


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


# merging shards -----------------------------------------------------------------------------------


def merge_settings(files: list[SourceFile]) -> tuple[dict[Setting, dict[str, Generation]], int]:
    """Group generations by setting and question; return them and the count of exact repeats.

    A repeat with the same text (a shard given in two copies) is dropped and counted. A repeat with
    another text means two runs claim one setting, which raises ValueError.
    """
    merged: dict[Setting, dict[str, Generation]] = {}
    repeats = 0
    for source_file in files:
        for generation in source_file.generations:
            by_question = merged.setdefault(generation.setting, {})
            earlier = by_question.setdefault(question_key(generation.question), generation)
            if earlier is generation:
                continue
            if earlier.text != generation.text and earlier.file == generation.file:
                raise ValueError(
                    f"{generation.file} contains two different texts of setting "
                    f"{generation.setting.label!r} for the question "
                    f"{_shorten(generation.question)!r}; remove one of them"
                )
            if earlier.text != generation.text:
                raise ValueError(
                    f"{generation.file} and {earlier.file} both contain setting "
                    f"{generation.setting.label!r} with different texts for the question "
                    f"{_shorten(generation.question)!r}; if they are different runs, give them "
                    f"different sources (NAME=PATH arguments), otherwise pass only one of them"
                )
            repeats += 1
    if repeats:
        logger.warning("dropped %d repeated generations with identical text", repeats)
    return merged, repeats


def check_unique_labels(order: list[Setting]) -> None:
    """Raise ValueError when two different settings would share one schedule label."""
    seen: dict[str, Setting] = {}
    for setting in order:
        earlier = seen.setdefault(setting.label, setting)
        if earlier is not setting:
            raise ValueError(
                f"two settings share the schedule label {setting.label!r} ({earlier} and "
                f"{setting}); give them different path names or sources"
            )


def resolve_model(files: list[SourceFile], requested: str | None) -> str:
    """Return the one model named by the files or by `requested`; raise if they disagree."""
    named = {source_file.model for source_file in files if source_file.model}
    if len(named) > 1:
        raise ValueError(
            f"the input files name several models {sorted(named)}; import each model separately"
        )
    if requested and named and requested not in named:
        raise ValueError(f"--model {requested!r} differs from the files' model {named.pop()!r}")
    if not requested and not named:
        raise ValueError("the input files name no model; pass --model NAME")
    return requested or named.pop()


# joining to the dataset ---------------------------------------------------------------------------


def _dataset_positions(examples: list) -> dict[str, list[int]]:
    positions: dict[str, list[int]] = {}
    for position, example in enumerate(examples):
        positions.setdefault(question_key(example.question), []).append(position)
    return positions


def _unmatched(merged: dict, positions: dict[str, list[int]]) -> dict[str, Generation]:
    """Return the question keys read that match no dataset row, with one generation of each."""
    found: dict[str, Generation] = {}
    for by_question in merged.values():
        for key, generation in by_question.items():
            if key not in positions:
                found.setdefault(key, generation)
            elif len(positions[key]) > 1:
                raise ValueError(
                    f"{generation.file}: the question {_shorten(generation.question)!r} matches "
                    f"dataset rows {positions[key]}, so a join by text is ambiguous; remove the "
                    f"duplicate rows from the dataset"
                )
    return found


def check_unmatched(unmatched: dict[str, Generation], n_read: int, limit: float) -> None:
    """Raise ValueError when more questions than `limit` allows match no dataset row."""
    allowed = int(limit) if limit >= 1 else math.floor(limit * n_read)
    if len(unmatched) <= allowed:
        return
    first = next(iter(unmatched.values()))
    raise ValueError(
        f"{len(unmatched)} of {n_read} questions read match no dataset question (allowed: "
        f"{allowed}; first: {_shorten(first.question)!r} in {first.file}); check --dataset, or "
        f"pass --max-unmatched {len(unmatched)} to drop them and import the rest"
    )


# the paths table ----------------------------------------------------------------------------------


def _path_row(example, path_id: int, setting: Setting, generation: Generation) -> dict:
    return {
        "question_id": example.id,
        "path_id": path_id,
        "schedule": setting.label,
        "block_sizes": list(setting.block_sizes),
        "seed": setting.seed,
        "temperature": setting.temperature,
        "remasking": setting.remasking,
        "gen_length": setting.gen_length,
        "steps": setting.steps,
        "text": generation.text,
        "gold": example.gold,
    }


def _fix_dtypes(paths: pd.DataFrame) -> pd.DataFrame:
    """Store gen_length and steps as int64, nullable only when a generic row left them out."""
    for column in ("gen_length", "steps"):
        has_gaps = paths[column].isna().any()
        paths[column] = paths[column].astype("Int64" if has_gaps else "int64")
    # One forward pass per diffusion step; NaN when the input did not give the steps.
    steps = paths["steps"]
    paths["nfe"] = steps.astype("float64") if steps.isna().any() else steps
    paths["nll"] = np.nan
    return paths


def build_paths(examples: list, order: list[Setting], merged: dict) -> pd.DataFrame:
    """Build and grade one row per (question, setting), in dataset order, then path order."""
    rows, labels = [], []
    for example in examples:
        key = question_key(example.question)
        for path_id, setting in enumerate(order):
            generation = merged[setting].get(key)
            if generation is not None:
                rows.append(_path_row(example, path_id, setting, generation))
                labels.append(example.labels if example.task == "mc" else None)
    if not rows:
        raise ValueError("no input question matches the dataset; check --dataset")
    paths = pd.DataFrame(rows)
    task = examples[0].task
    graded = grade_texts(task, paths["text"].tolist(), paths["gold"].tolist(), labels)
    return _fix_dtypes(pd.concat([paths, graded], axis=1))


# counts for metrics.json --------------------------------------------------------------------------


def gold_counts(task: str, examples: list, merged: dict) -> dict[str, int]:
    """Count joined generations whose file gold was null or differs from the dataset gold."""
    from hexlab.answers import is_correct

    golds = {question_key(example.question): example.gold for example in examples}
    null, mismatched = 0, 0
    for by_question in merged.values():
        for key, generation in by_question.items():
            if key not in golds or not generation.has_gold_field:
                continue
            if generation.file_gold is None:
                null += 1
            elif not is_correct(task, str(generation.file_gold), golds[key]):
                mismatched += 1
                logger.debug(
                    "%s: file gold %r, dataset gold %r",
                    generation.file,
                    generation.file_gold,
                    golds[key],
                )
    if mismatched:
        logger.warning(
            "%d generations carry a gold answer that differs from the dataset's; "
            "the dataset's gold is used",
            mismatched,
        )
    return {"null_golds_replaced": null, "gold_mismatches": mismatched}


def import_counts(files: list[SourceFile], paths: pd.DataFrame, order: list[Setting]) -> dict:
    """Count rows read per source, paths per setting and questions per number of settings."""
    rows_read = Counter()
    for source_file in files:
        rows_read[source_file.source] += len(source_file.generations)
    settings_per_question = paths.groupby("question_id")["path_id"].nunique()
    by_count = settings_per_question.value_counts().sort_index()
    return {
        "rows_read_per_source": dict(rows_read),
        "paths_per_setting": {s.label: int((paths["schedule"] == s.label).sum()) for s in order},
        "questions_joined": int(paths["question_id"].nunique()),
        "questions_by_settings": {str(n): int(count) for n, count in by_count.items()},
    }


# entry points -------------------------------------------------------------------------------------


def _setting_record(path_id: int, setting: Setting, merged: dict, paths: pd.DataFrame) -> dict:
    files = sorted({str(g.file) for g in merged[setting].values()})
    return {
        "path_id": path_id,
        "schedule": setting.label,
        "source": setting.source,
        "gen_length": setting.gen_length,
        "steps": setting.steps,
        "block_length": setting.block_length(),
        "block_sizes": list(setting.block_sizes),
        "remasking": setting.remasking,
        "temperature": setting.temperature,
        "seed": setting.seed,
        "n_generations": len(merged[setting]),
        "n_questions": int((paths["path_id"] == path_id).sum()),
        "files": files,
    }


def _common_gen_length(order: list[Setting]) -> int | None:
    """Return the answer length shared by every setting, else None.

    Tables read one answer length from the config to spot one-block paths; a mixed import has none.
    """
    lengths = {setting.gen_length for setting in order}
    return lengths.pop() if len(lengths) == 1 else None


def read_inputs(config: ImportConfig) -> tuple[list[SourceFile], dict, int]:
    """Read every input file and merge shards; return the files, the merged settings, repeats."""
    files = [read_source_file(item) for item in expand_inputs(config.inputs)]
    for source, count in Counter(source_file.source for source_file in files).items():
        logger.info("source %s: %d files", source, count)
    if not any(source_file.generations for source_file in files):
        raise ValueError(f"the inputs {list(config.inputs)} contain no generations")
    merged, repeats = merge_settings(files)
    return files, merged, repeats


def _unmatched_counts(unmatched: dict[str, Generation], merged: dict) -> dict:
    rows = sum(key in unmatched for by_question in merged.values() for key in by_question)
    shown = [_shorten(generation.question) for generation in unmatched.values()]
    return {
        "unmatched_questions": len(unmatched),
        "unmatched_rows": rows,
        "unmatched_examples": shown[:SHOWN_UNMATCHED],
    }


def import_run(config: ImportConfig) -> ImportedRun:
    """Read, join, grade and vote the inputs of `config`; write nothing."""
    from hexlab import __version__
    from hexlab.datasets import dataset_hash, load_dataset

    logger.info("importing %s against dataset %s", list(config.inputs), config.dataset)
    files, merged, repeats = read_inputs(config)
    model = resolve_model(files, config.model)
    order = sorted(merged, key=Setting.sort_key)
    check_unique_labels(order)
    logger.info("settings in path order: %s", [setting.label for setting in order])

    # join to the dataset
    examples = load_dataset(config.dataset, **({"task": config.task} if config.task else {}))
    unmatched = _unmatched(merged, _dataset_positions(examples))
    n_read = len({key for by_question in merged.values() for key in by_question})
    check_unmatched(unmatched, n_read, config.max_unmatched)
    if unmatched:
        logger.warning("dropped %d questions that match no dataset question", len(unmatched))

    # grade, vote and summarise
    paths = build_paths(examples, order, merged)
    votes = vote_table(paths)
    task = examples[0].task
    counts = {
        **import_counts(files, paths, order),
        **gold_counts(task, examples, merged),
        "repeated_generations_dropped": repeats,
        **_unmatched_counts(unmatched, merged),
    }
    run_config = {
        "kind": "import",
        "model": model,
        "dataset": config.dataset,
        "task": task,
        "dataset_hash": dataset_hash(examples),
        "sources": [source_file.record() for source_file in files],
        "settings": [_setting_record(i, s, merged, paths) for i, s in enumerate(order)],
        "gen_length": _common_gen_length(order),
        "max_unmatched": config.max_unmatched,
        "hexlab_version": __version__,
    }
    metrics = {**run_metrics(paths, votes), "import": counts}
    return ImportedRun(run_config, paths, votes, metrics)


def _check_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file; choose another --out")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(
            f"{out} is not empty; choose another --out, or pass --overwrite to replace an "
            f"earlier import there"
        )
    config_file = out / CONFIG
    kind = json.loads(config_file.read_text()).get("kind") if config_file.is_file() else None
    if kind != "import":
        raise FileExistsError(
            f"{out} does not contain an imported run (no {CONFIG} with kind 'import'), and "
            f"--overwrite replaces only imported runs; choose another --out"
        )


def write_run(run: ImportedRun, out: str | Path, overwrite: bool = False) -> Path:
    """Write the run's four files to `out`, each atomically; return the directory."""
    out = Path(out)
    _check_out_dir(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / CONFIG, run.config)
    atomic_write_parquet(out / PATHS, run.paths)
    atomic_write_parquet(out / VOTES, run.votes)
    atomic_write_json(out / METRICS, run.metrics)
    logger.info("wrote %d paths of %d questions to %s", len(run.paths), len(run.votes), out)
    return out
