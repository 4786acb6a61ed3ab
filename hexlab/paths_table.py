"""Reading a run's paths table, and the checks and filters that the reports share.

A run directory (made by `hexlab run` or `hexlab import`) contains `paths.parquet`, one row per
question and decoding path, and `config.json`. The reports need the columns `REQUIRED_COLUMNS`.
`answer_key` is None or NaN when the path gave no parsable answer. `nll` is optional and is NaN
in imported runs, so `has_nll` decides whether likelihood-based results exist.

Imported runs may lack some paths of some questions. `complete_questions` keeps only the questions
that have every path of the run, for comparisons on one fixed set of questions.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("question_id", "path_id", "answer_key", "correct", "nfe")


def load_run(run_dir: str | Path) -> tuple[pd.DataFrame, dict]:
    """Read `paths.parquet` and `config.json` of a run directory and check the paths columns."""
    run_dir = Path(run_dir)
    hint = "run `hexlab run` or `hexlab import` to create it"
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory not found: {run_dir} ({hint})")
    paths_file = run_dir / "paths.parquet"
    if not paths_file.is_file():
        raise FileNotFoundError(f"paths table not found: {paths_file} ({hint})")
    paths = pd.read_parquet(paths_file)
    missing = [column for column in REQUIRED_COLUMNS if column not in paths.columns]
    if missing:
        raise ValueError(f"{paths_file} lacks the columns {missing} ({hint})")

    config_file = run_dir / "config.json"
    config: dict = {}
    if config_file.is_file():
        config = json.loads(config_file.read_text())
    else:
        logger.warning("no config.json in %s, so dataset and model are unknown", run_dir)
    return paths, config


def find_config_value(config: dict, key: str) -> object | None:
    """Return the first value stored under `key` at any depth of a nested config.

    A dict value such as {"name": "gsm8k", ...} is reduced to its "name" or "id" entry.
    """
    queue = [config]
    while queue:
        node = queue.pop(0)
        if key in node:
            value = node[key]
            if isinstance(value, dict):
                return value.get("name", value.get("id"))
            return value
        queue.extend(value for value in node.values() if isinstance(value, dict))
    return None


def has_nll(paths: pd.DataFrame) -> bool:
    """Return True when at least one path has an NLL value.

    Imported runs store an all-NaN `nll` column, which must count as "no likelihoods" rather than
    as a lowest-NLL selection that never finds a path.
    """
    return "nll" in paths.columns and bool(paths["nll"].notna().any())


def keep_first_paths(paths: pd.DataFrame, max_paths: int | None) -> pd.DataFrame:
    """Keep the rows of the `max_paths` lowest path ids of the run (None keeps every row)."""
    if max_paths is None:
        return paths
    kept_ids = pd.Series(paths["path_id"].unique()).sort_values().iloc[:max_paths]
    return paths[paths["path_id"].isin(kept_ids)]


def complete_questions(paths: pd.DataFrame) -> pd.DataFrame:
    """Keep the questions that have a row for every path id found in the table.

    Logs how many questions were dropped. Raises ValueError when no question is complete.
    """
    num_path_ids = paths["path_id"].nunique()
    per_question = paths.groupby("question_id")["path_id"].nunique()
    complete_ids = per_question.index[per_question == num_path_ids]
    dropped = len(per_question) - len(complete_ids)
    if len(complete_ids) == 0:
        raise ValueError(
            f"no question has all {num_path_ids} paths; drop --complete-only or lower --max-paths"
        )
    if dropped:
        logger.info(
            "kept %d of %d questions that have all %d paths",
            len(complete_ids),
            len(per_question),
            num_path_ids,
        )
    return paths[paths["question_id"].isin(complete_ids)]
