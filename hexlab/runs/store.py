"""The run directory: what `hexlab run` writes and every later tool reads.

    RUN_DIR/
      config.json          resolved configuration, environment, model and dataset hashes
      chunks/              one unit of finished work per file, written atomically:
        chunk-00012.parquet  one row per (question, path) of the chunk
        chunk-00012.npz      the rows' decoding trajectories
      paths.parquet        every chunk's rows, in question then path order
      votes.parquet        one row per question: the vote over its paths
      metrics.json         accuracy, tie rate, collapse rate, per-schedule accuracy, throughput

A chunk is a fixed group of questions with all their paths. Chunk files appear whole or not at all
(written to a temporary name, then renamed), so a run killed at any moment resumes from the chunks
on disk and ends with the same files as an uninterrupted run. Ranks of a distributed run write
disjoint chunks; merging reads them in chunk order, so the result does not depend on the number of
ranks.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

logger = logging.getLogger(__name__)

CONFIG = "config.json"
CHUNKS = "chunks"
PATHS = "paths.parquet"
VOTES = "votes.parquet"
METRICS = "metrics.json"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename, so readers never see half."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(temporary, 0o644)  # mkstemp creates files readable by the owner only
        with os.fdopen(handle, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, payload: dict) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2, default=str) + "\n").encode())


def atomic_write_parquet(path: Path, frame: pd.DataFrame) -> None:
    import io

    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    atomic_write_bytes(path, buffer.getvalue())


def remove_temporary_files(run_dir: Path) -> None:
    """Delete temporary files a killed process left behind; finished files are never touched."""
    for folder in (run_dir, run_dir / CHUNKS):
        if folder.is_dir():
            for leftover in folder.glob(".*.tmp"):
                leftover.unlink(missing_ok=True)


def prepare_run_dir(run_dir: Path, config: dict, fingerprint_keys: Iterable[str]) -> bool:
    """Create the run directory or check that an existing one holds the same configuration.

    Returns True when the directory already held this run (a resume). Raises FileExistsError for a
    directory of another configuration or one that is not a hexlab run directory, and
    PermissionError for a directory that cannot be written.
    """
    run_dir = Path(run_dir)
    config_file = run_dir / CONFIG
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"run directory {run_dir} is a file; choose another --out")
    if config_file.is_file():
        check_same_config(json.loads(config_file.read_text()), config, fingerprint_keys, run_dir)
        remove_temporary_files(run_dir)
        return True
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise FileExistsError(
            f"{run_dir} is not empty and holds no {CONFIG}, so it is not a hexlab run directory; "
            f"choose another --out"
        )
    try:
        (run_dir / CHUNKS).mkdir(parents=True, exist_ok=True)
        atomic_write_json(config_file, config)
    except PermissionError as error:
        raise PermissionError(
            f"cannot write run directory {run_dir}: {error}; choose another --out"
        ) from error
    return False


def check_same_config(stored: dict, current: dict, keys: Iterable[str], run_dir: Path) -> None:
    """Raise FileExistsError naming every setting that differs between two run configurations."""
    current = json.loads(json.dumps(current, default=str))  # tuples become lists, as stored
    differences = [
        f"{key}: {_short(stored.get(key))} in the directory, {_short(current.get(key))} now"
        for key in keys
        if stored.get(key) != current.get(key)
    ]
    if differences:
        raise FileExistsError(
            f"{run_dir} holds a run with another configuration ("
            + "; ".join(differences)
            + "); use another --out, or rerun with the stored settings to resume it"
        )


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def chunk_stem(index: int) -> str:
    return f"chunk-{index:05d}"


def finished_chunks(run_dir: Path) -> set[int]:
    """Indices of chunks whose row file and trajectory file are both on disk."""
    folder = Path(run_dir) / CHUNKS
    done = set()
    for rows_file in folder.glob("chunk-*.parquet"):
        index = int(rows_file.stem.split("-")[1])
        if (folder / f"{chunk_stem(index)}.npz").is_file():
            done.add(index)
    return done


def write_chunk(run_dir: Path, index: int, rows: pd.DataFrame, trajectory_bytes: bytes) -> None:
    """Write a chunk's trajectories, then its rows: a chunk counts as done once both exist."""
    folder = Path(run_dir) / CHUNKS
    atomic_write_bytes(folder / f"{chunk_stem(index)}.npz", trajectory_bytes)
    atomic_write_parquet(folder / f"{chunk_stem(index)}.parquet", rows)


def read_chunks(run_dir: Path, expected: int) -> pd.DataFrame:
    """Concatenate all chunk rows in chunk order; raise if any of `expected` chunks is missing."""
    done = finished_chunks(run_dir)
    missing = sorted(set(range(expected)) - done)
    if missing:
        raise RuntimeError(
            f"{run_dir} lacks {len(missing)} of {expected} chunks (first missing: {missing[0]}); "
            f"run the same `hexlab run` command again to finish them, then merge"
        )
    folder = Path(run_dir) / CHUNKS
    frames = [pd.read_parquet(folder / f"{chunk_stem(i)}.parquet") for i in range(expected)]
    return pd.concat(frames, ignore_index=True)


def read_config(run_dir: Path) -> dict:
    config_file = Path(run_dir) / CONFIG
    if not config_file.is_file():
        raise FileNotFoundError(
            f"{run_dir} has no {CONFIG}; pass a directory written by `hexlab run` or "
            f"`hexlab import`"
        )
    return json.loads(config_file.read_text())
