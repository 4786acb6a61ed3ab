"""Read generation files decoded elsewhere: the d1 layout and generic JSON lines.

Formats (plain or gzip-compressed; the format is read from the content, not the name):

- d1 layout, as written by the d1 evaluation script and its forks: one JSON object with
  `generations` (a list of {question, generations, ground_truth}), `gen_length`,
  `diffusion_steps`, `block_length` and `model_path`. One file contains one decoding setting, or one
  rank's shard of it. The remasking rule is read from the file name when the name contains one
  (`..._top_k_margin_256_...`), else it is `DEFAULT_REMASKING`.
- JSON lines (or a JSON array) of generic rows: `question`, `path` (the name of the decoding
  path) and `text` are required; `GENERIC_OPTIONAL_FIELDS` may describe the setting.

Every input file belongs to a source: the NAME of a `NAME=PATH` argument, else the name of the
folder that contains the file. A setting is (source, answer length, steps, block sizes, remasking,
temperature, seed, path name), so shards of one run merge, and two runs with equal settings from
different sources stay apart, each with its source in the schedule label.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path

logger = logging.getLogger(__name__)

GENERATION_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")
D1_REQUIRED_FIELDS = ("generations", "gen_length", "diffusion_steps", "block_length")
GENERIC_REQUIRED_FIELDS = ("question", "path", "text")
GENERIC_OPTIONAL_FIELDS = (
    "gen_length",
    "steps",
    "block_length",
    "block_sizes",
    "remasking",
    "temperature",
    "seed",
    "ground_truth",
    "model",
)
# NOTE: d1-layout files do not record the remasking rule. Low confidence is assumed: it is the
# default of LLaDA's reference sampler (ML-GSAI/LLaDA generate.py), from which d1's derives.
DEFAULT_REMASKING = "low_confidence"
GZIP_MAGIC = b"\x1f\x8b"


@dataclasses.dataclass(frozen=True)
class Setting:
    """One decoding setting: every generation of it is one path slot of the run."""

    source: str
    gen_length: int | None
    steps: int | None
    block_sizes: tuple[int, ...]
    remasking: str
    temperature: float = 0.0
    seed: int = 0
    path_name: str | None = None

    @property
    def label(self) -> str:
        """The schedule label, such as "d1/gen256/b32/low_confidence", or "source/path name".

        Files in the d1 layout decode at temperature 0 with seed 0, so the label omits both.
        """
        if self.path_name is not None:
            return f"{self.source}/{self.path_name}"
        parts = [self.source, f"gen{self.gen_length}", _blocks_label(self.block_sizes)]
        if self.gen_length and self.steps != self.gen_length // 2:
            parts.append(f"steps{self.steps}")
        parts.append(self.remasking)
        return "/".join(parts)

    def sort_key(self) -> tuple:
        from hexlab.decode.schedules import REMASKING_RULES

        known = REMASKING_RULES.index(self.remasking) if self.remasking in REMASKING_RULES else 99
        return (
            self.gen_length or 0,
            self.block_sizes,
            self.steps or 0,
            known,
            self.remasking,
            self.temperature,
            self.seed,
            self.source,
            self.path_name or "",
        )

    def block_length(self) -> int | None:
        return self.block_sizes[0] if len(set(self.block_sizes)) == 1 else None


def _blocks_label(block_sizes: tuple[int, ...]) -> str:
    if len(set(block_sizes)) == 1:
        return f"b{block_sizes[0]}"
    return "b" + ",".join(str(size) for size in block_sizes)


@dataclasses.dataclass(frozen=True)
class Generation:
    """One generated text of one setting, before it is joined to the dataset."""

    setting: Setting
    question: str
    text: str
    file: Path
    file_gold: object = None
    has_gold_field: bool = False


@dataclasses.dataclass(frozen=True)
class InputFile:
    """An input file and the source it belongs to."""

    path: Path
    source: str


@dataclasses.dataclass
class SourceFile:
    """Contents of one input file: its SHA-256, generations and model name."""

    path: Path
    source: str
    sha256: str
    generations: list[Generation]
    model: str | None

    def record(self) -> dict:
        labels = sorted({g.setting.label for g in self.generations})
        return {
            "path": str(self.path),
            "source": self.source,
            "sha256": self.sha256,
            "setting": labels[0] if len(labels) == 1 else labels,
            "n_generations": len(self.generations),
        }


# input files --------------------------------------------------------------------------------------


def _is_generation_file(path: Path) -> bool:
    return path.name.lower().endswith(GENERATION_SUFFIXES)


def _split_spec(spec: str) -> tuple[str | None, Path]:
    """Split `NAME=PATH` into its parts; an existing path that contains "=" has no name."""
    if "=" not in spec or Path(spec).expanduser().exists():
        return None, Path(spec).expanduser()
    name, location = spec.split("=", 1)
    if not name or "/" in name:
        raise ValueError(f"invalid input {spec!r}: write PATH or NAME=PATH with a NAME free of '/'")
    return name, Path(location).expanduser()


def _folder_files(folder: Path) -> list[Path]:
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    kept = [path for path in files if _is_generation_file(path)]
    if len(kept) < len(files):
        logger.info(
            "%s: skipped %d files that are not JSON or JSON lines", folder, len(files) - len(kept)
        )
    if not kept:
        raise FileNotFoundError(
            f"{folder} contains no {', '.join(GENERATION_SUFFIXES)} files; pass generation files "
            f"or a folder of them"
        )
    return kept


def expand_inputs(specs: Iterable[str | Path]) -> list[InputFile]:
    """Resolve `PATH` or `NAME=PATH` arguments (files or folders, searched recursively).

    A folder contributes its .json, .jsonl, .json.gz and .jsonl.gz files and skips other files
    (licences, notes) with a log line. A file's source is NAME, else its folder's name. Raises
    FileNotFoundError for a missing path or a folder without generation files, and ValueError for
    a file given twice.
    """
    inputs: list[InputFile] = []
    for spec in specs:
        name, path = _split_spec(str(spec))
        if path.is_dir():
            files = _folder_files(path)
        elif path.is_file():
            files = [path]
        else:
            raise FileNotFoundError(f"input {str(path)!r} not found; pass files or folders")
        inputs.extend(InputFile(file, name or file.resolve().parent.name) for file in files)

    seen: dict[Path, InputFile] = {}
    for item in inputs:
        earlier = seen.setdefault(item.path.resolve(), item)
        if earlier is not item:
            raise ValueError(
                f"{item.path} is given twice (also as {earlier.path}); pass each file once"
            )
    return inputs


def _read_text(path: Path) -> tuple[str, str]:
    """Return the decoded text of a plain or gzip file and the SHA-256 of its bytes on disk."""
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise ValueError(f"{path}: invalid gzip data ({error}); re-compress the file") from None
    try:
        return data.decode("utf-8-sig"), digest
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path}: not UTF-8 text (byte {error.start}); expected JSON or JSON lines"
        ) from None


def _parse_json_or_lines(path: Path, text: str) -> object:
    """Parse a whole-file JSON value, else JSON lines (a list of objects)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as whole_error:
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise ValueError(
                    f"{path}: unknown format: neither JSON ({whole_error.msg} at line "
                    f"{whole_error.lineno}) nor JSON lines (line {number} is invalid); pass a "
                    f"d1-layout JSON file or JSON lines with question, path and text fields"
                ) from None
        return rows


def read_source_file(item: InputFile) -> SourceFile:
    """Read one input file in the d1 layout or as generic rows; raise ValueError if neither."""
    text, digest = _read_text(item.path)
    payload = _parse_json_or_lines(item.path, text)
    if isinstance(payload, dict) and "generations" in payload:
        generations, model = _d1_generations(payload, item)
    elif isinstance(payload, dict) and set(GENERIC_REQUIRED_FIELDS) <= set(payload):
        # JSON lines with one row parse as a single JSON object
        generations, model = _generic_generations([payload], item)
    elif isinstance(payload, list):
        generations, model = _generic_generations(payload, item)
    else:
        found = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(
            f"{item.path}: unknown format (top level: {found}); expected a d1-layout object with "
            f"fields {', '.join(D1_REQUIRED_FIELDS)}, or JSON lines with fields "
            f"{', '.join(GENERIC_REQUIRED_FIELDS)}"
        )
    logger.debug(
        "read %d generations from %s (source %s)", len(generations), item.path, item.source
    )
    return SourceFile(item.path, item.source, digest, generations, model)


# the d1 layout ------------------------------------------------------------------------------------


def _positive_int(value: object, field: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{where}: field {field!r} must be a positive integer, got {value!r}")
    return value


def remasking_from_name(name: str) -> str:
    """Return the remasking rule named in a file name, else `DEFAULT_REMASKING`."""
    from hexlab.decode.schedules import REMASKING_RULES

    found = [rule for rule in REMASKING_RULES if rule in name]
    return found[0] if found else DEFAULT_REMASKING


def _d1_setting(payload: dict, item: InputFile) -> Setting:
    missing = [field for field in D1_REQUIRED_FIELDS if field not in payload]
    if missing:
        raise ValueError(f"{item.path}: d1-layout file lacks the fields {missing}")
    where = str(item.path)
    gen_length = _positive_int(payload["gen_length"], "gen_length", where)
    steps = _positive_int(payload["diffusion_steps"], "diffusion_steps", where)
    block_length = _positive_int(payload["block_length"], "block_length", where)
    blocks = uniform_blocks(gen_length, block_length, steps, where)
    return Setting(item.source, gen_length, steps, blocks, remasking_from_name(item.path.name))


def uniform_blocks(gen_length: int, block_length: int, steps: int, where: str) -> tuple[int, ...]:
    """Return the block sizes of a uniform schedule, checked by the decoder's own `PathSpec`."""
    from hexlab.decode.schedules import PathSpec

    try:
        spec = PathSpec.uniform(min(block_length, gen_length), gen_length, steps=steps)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    return spec.block_sizes


def _d1_generations(payload: dict, item: InputFile) -> tuple[list[Generation], str | None]:
    setting = _d1_setting(payload, item)
    rows = payload["generations"]
    if not isinstance(rows, list):
        raise ValueError(f"{item.path}: field 'generations' must be a list of objects")
    generations = []
    for index, row in enumerate(rows):
        where = f"{item.path}, generation {index}"
        question = _text_field(row, "question", where)
        text = _text_field(row, "generations", where)
        generations.append(
            Generation(
                setting, question, text, item.path, row.get("ground_truth"), "ground_truth" in row
            )
        )
    return generations, payload.get("model_path")


def _text_field(row: object, field: str, where: str) -> str:
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if not isinstance(row.get(field), str):
        present = ", ".join(sorted(row)) or "none"
        raise ValueError(f"{where}: missing text field {field!r} (fields present: {present})")
    return row[field]


# generic rows -------------------------------------------------------------------------------------


def _optional_int(row: dict, field: str, where: str) -> int | None:
    return None if row.get(field) is None else _positive_int(row[field], field, where)


def _number(row: dict, field: str, kind: type, where: str) -> float | int:
    value = row.get(field) or 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or kind(value) != value:
        raise ValueError(f"{where}: field {field!r} must be a {kind.__name__}, got {value!r}")
    return kind(value)


def _generic_setting(row: dict, item: InputFile, where: str) -> Setting:
    unknown = sorted(set(row) - set(GENERIC_REQUIRED_FIELDS) - set(GENERIC_OPTIONAL_FIELDS))
    if unknown:
        raise ValueError(
            f"{where}: unknown fields {unknown}; accepted: "
            f"{', '.join(GENERIC_REQUIRED_FIELDS + GENERIC_OPTIONAL_FIELDS)}"
        )
    gen_length = _optional_int(row, "gen_length", where)
    steps = _optional_int(row, "steps", where)
    block_length = _optional_int(row, "block_length", where)
    if row.get("block_sizes") is not None:
        sizes = row["block_sizes"]
        if not isinstance(sizes, list) or not sizes:
            raise ValueError(f"{where}: block_sizes must be a non-empty list, got {sizes!r}")
        blocks = tuple(_positive_int(size, "block_sizes", where) for size in sizes)
        if gen_length is not None and sum(blocks) != gen_length:
            raise ValueError(f"{where}: block_sizes {sizes} do not sum to gen_length {gen_length}")
    elif block_length is not None:
        if gen_length is None or steps is None:
            raise ValueError(f"{where}: block_length needs gen_length and steps in the same row")
        blocks = uniform_blocks(gen_length, block_length, steps, where)
    else:
        blocks = ()
    return Setting(
        source=item.source,
        gen_length=gen_length,
        steps=steps,
        block_sizes=blocks,
        remasking=str(row.get("remasking") or DEFAULT_REMASKING),
        temperature=_number(row, "temperature", float, where),
        seed=_number(row, "seed", int, where),
        path_name=str(row["path"]),
    )


def _generic_generations(rows: list, item: InputFile) -> tuple[list[Generation], str | None]:
    generations, models = [], set()
    settings: dict[str, Setting] = {}
    for index, row in enumerate(rows, start=1):
        where = f"{item.path}, row {index}"
        question, text = _text_field(row, "question", where), _text_field(row, "text", where)
        if row.get("path") is None:
            raise ValueError(f"{where}: missing field 'path' (the name of the decoding path)")
        setting = _generic_setting(row, item, where)
        first = settings.setdefault(setting.path_name, setting)
        if first != setting:
            raise ValueError(
                f"{where}: path {setting.path_name!r} has other settings than in an earlier row "
                f"({first} vs {setting}); give each setting its own path name"
            )
        if row.get("model"):
            models.add(str(row["model"]))
        generations.append(
            Generation(
                setting, question, text, item.path, row.get("ground_truth"), "ground_truth" in row
            )
        )
    if len(models) > 1:
        raise ValueError(f"{item.path}: rows name several models {sorted(models)}; split the file")
    return generations, models.pop() if models else None
