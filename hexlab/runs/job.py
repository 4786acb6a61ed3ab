"""The main job: decode a dataset along many paths, grade, vote and write a run directory.

Work is split into chunks of whole questions (all paths of a question stay in one chunk). Each
process of a distributed run takes every world_size-th chunk, skips chunks already on disk, and
writes each finished chunk atomically; rank 0 then merges the chunks into paths.parquet,
votes.parquet and metrics.json. Because a row's output does not depend on its batch neighbours,
the merged result is the same for any number of processes, any batch size and any number of
interruptions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import math
import time
from pathlib import Path

import pandas as pd

from hexlab.runs import store
from hexlab.runs.aggregate import grade_texts, run_metrics, vote_table
from hexlab.runs.config import RunConfig, preset_paths, schedule_of

logger = logging.getLogger(__name__)

# Settings that change results; a run directory only resumes with the same values.
FINGERPRINT_KEYS = (
    "model",
    "weights_hash",
    "dataset",
    "dataset_hash",
    "n_questions",
    "gen_length",
    "steps",
    "paths",
    "path_specs",
    "dtype",
    "device_type",
    "tie_rule",
    "top_k",
    "template",
)


@dataclasses.dataclass
class RunResult:
    run_dir: Path
    metrics: dict
    is_main: bool


@dataclasses.dataclass
class Plan:
    """A resolved run: the model, its questions and prompts, the paths and the chunking."""

    config: RunConfig
    lm: object
    examples: list
    prompts: list[list[int]]
    specs: list
    gen_length: int
    steps: int
    run_dir: Path


def run(config: RunConfig) -> RunResult:
    """Run (or resume) the job described by `config`; every process of torchrun calls this."""
    from hexlab.runs.distributed import Distributed

    dist = Distributed.from_environment(config.device)
    plan = make_plan(config, dist.device)
    record = describe(plan, dist.world_size)
    resumed = False
    if dist.is_main:
        resumed = store.prepare_run_dir(plan.run_dir, record, FINGERPRINT_KEYS)
    dist.barrier()
    stored = store.read_config(plan.run_dir)
    store.check_same_config(stored, record, FINGERPRINT_KEYS, plan.run_dir)
    chunk_questions = int(stored["chunk_questions"])
    if config.chunk_questions is not None and config.chunk_questions != chunk_questions:
        raise FileExistsError(
            f"{plan.run_dir} was started with --chunk-questions {chunk_questions}; resume it with "
            f"that value or leave the option out"
        )
    logger.info(
        "%s run in %s: %d questions x %d paths, rank %d of %d",
        "resuming" if resumed else "starting",
        plan.run_dir,
        len(plan.examples),
        len(plan.specs),
        dist.rank,
        dist.world_size,
    )

    logger.info("paths in vote order: %s", ", ".join(spec.label for spec in plan.specs))
    decode_chunks(plan, chunk_questions, dist.rank, dist.world_size)
    dist.barrier()
    metrics = merge(plan.run_dir) if dist.is_main else {}
    dist.close()
    return RunResult(plan.run_dir, metrics, dist.is_main)


def make_plan(config: RunConfig, device: str | None) -> Plan:
    """Load the model and dataset and check everything before any file is written."""
    from hexlab.datasets import load_dataset
    from hexlab.models import load_model
    from hexlab.prompts import build_prompt

    if config.tie_rule not in ("first", "nll", "random"):
        raise ValueError(f"unknown tie rule {config.tie_rule!r}: use first, nll or random")
    examples = load_dataset(config.dataset, limit=config.limit)
    if not examples:
        raise ValueError(f"dataset {config.dataset!r} has no questions (limit {config.limit})")
    lm = load_model(config.model, device=device, dtype=config.dtype)
    gen_length = lm.profile.gen_length if config.gen_length is None else config.gen_length
    steps = gen_length // 2 if config.steps is None else config.steps
    if not 0 < steps <= gen_length:
        # a step reveals at least one token, so steps beyond the window would never run
        raise ValueError(
            f"invalid steps {steps} for a {gen_length}-token answer window: give 1 to "
            f"{gen_length} (the paper uses half the window)"
        )
    specs = preset_paths(config, gen_length, steps)
    prompts = [build_prompt(example, lm, config.template) for example in examples]
    longest = max(len(p) for p in prompts) + gen_length
    if lm.max_length is not None and longest > lm.max_length:
        raise ValueError(
            f"the longest prompt plus the {gen_length}-token answer window is {longest} tokens, "
            f"more than the model's maximum length {lm.max_length}; lower --gen-length or use "
            f"a shorter --template"
        )
    run_dir = config.out or Path("runs") / _default_name(config)
    return Plan(config, lm, examples, prompts, specs, gen_length, steps, Path(run_dir))


def _default_name(config: RunConfig) -> str:
    model = Path(config.model).name.lower()
    dataset = Path(config.dataset).stem.lower()
    return f"{model}-{dataset}-{config.paths}"


def describe(plan: Plan, world_size: int) -> dict:
    """Build the resolved configuration that is saved as config.json."""
    from hexlab.datasets import dataset_hash

    config = plan.config
    chunk_questions = config.chunk_questions or max(
        1, math.ceil(2 * config.batch_size / len(plan.specs))
    )
    return {
        "kind": "run",
        "model": plan.lm.name,
        "model_source": plan.lm.profile.source,
        "weights_hash": weights_hash(plan.lm.profile.source),
        "dataset": config.dataset,
        "dataset_hash": dataset_hash(plan.examples),
        "task": plan.examples[0].task,
        "n_questions": len(plan.examples),
        "limit": config.limit,
        "gen_length": plan.gen_length,
        "steps": plan.steps,
        "paths": config.paths,
        "path_specs": [dataclasses.asdict(spec) for spec in plan.specs],
        "dtype": str(next(plan.lm.model.parameters()).dtype).replace("torch.", ""),
        "device_type": plan.lm.device.type,
        "tie_rule": config.tie_rule,
        "top_k": config.top_k,
        "template": config.template,
        "batch_size": config.batch_size,
        "chunk_questions": chunk_questions,
        "world_size": world_size,
        "environment": environment(),
    }


def weights_hash(source: str) -> str | None:
    """SHA-256 over the weight files of a local model folder: names, sizes and contents.

    Files above 64 MiB contribute their size and their first and last MiB only. That separates
    checkpoints in practice and keeps an 8B model's hash to seconds. Hub ids that are not
    downloaded locally give None.
    """
    folder = Path(source)
    if not folder.is_dir():
        return None
    digest = hashlib.sha256()
    for file in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        size = file.stat().st_size
        digest.update(f"{file.name}:{size}".encode())
        with open(file, "rb") as f:
            if size <= 64 * 2**20:
                digest.update(f.read())
            else:
                digest.update(f.read(2**20))
                f.seek(size - 2**20)
                digest.update(f.read())
    return digest.hexdigest()[:16]


def environment() -> dict:
    """Package versions and the git commit of the checkout, when there is one."""
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("hexlab", "torch", "transformers", "numpy", "pandas"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"packages": versions, "git_commit": commit}


def decode_chunks(plan: Plan, chunk_questions: int, rank: int, world_size: int) -> None:
    """Decode this rank's unfinished chunks, writing each one as soon as it is done."""
    from tqdm.auto import tqdm

    n_chunks = math.ceil(len(plan.examples) / chunk_questions)
    done = store.finished_chunks(plan.run_dir)
    mine = [i for i in range(n_chunks) if i % world_size == rank]
    todo = [i for i in mine if i not in done]
    rows_per_question = len(plan.specs)
    total = sum(_chunk_size(i, chunk_questions, len(plan.examples)) for i in mine)
    finished = total - sum(_chunk_size(i, chunk_questions, len(plan.examples)) for i in todo)
    bar = tqdm(
        total=total * rows_per_question,
        initial=finished * rows_per_question,
        unit="path",
        desc=f"rank {rank}" if world_size > 1 else "decode",
        disable=None,
        dynamic_ncols=True,
    )
    questions_done = finished
    for index in todo:
        first = index * chunk_questions
        questions = range(first, min(first + chunk_questions, len(plan.examples)))
        frame, trajectory_bytes = decode_chunk(plan, index, questions, bar)
        store.write_chunk(plan.run_dir, index, frame, trajectory_bytes)
        questions_done += len(questions)
        bar.set_postfix_str(f"questions {questions_done}/{total}")
    bar.close()


def _chunk_size(index: int, chunk_questions: int, n_questions: int) -> int:
    return min(chunk_questions, n_questions - index * chunk_questions)


def decode_chunk(plan: Plan, index: int, questions: range, bar) -> tuple[pd.DataFrame, bytes]:
    """Decode all paths of `questions`; return their graded rows and the trajectories' NPZ."""
    from hexlab.decode import DecodeConfig, Trajectories, decode_batches
    from hexlab.likelihood import one_step_nll

    rows = [(plan.prompts[q], spec) for q in questions for spec in plan.specs]
    config = DecodeConfig(batch_size=plan.config.batch_size, top_k=plan.config.top_k)
    start = time.perf_counter()
    parts = []
    for part in decode_batches(plan.lm, rows, plan.gen_length, config):
        parts.append(part)
        bar.update(len(part))
    trajectories = Trajectories.concat(parts)
    seconds = time.perf_counter() - start

    # score each path with HEX's one-step likelihood of its final tokens
    tokens = trajectories.tokens.astype("int64")  # (R, G)
    prompts = [prompt for prompt, _ in rows]
    nll = one_step_nll(plan.lm, prompts, tokens.tolist(), batch_size=plan.config.batch_size)
    texts = plan.lm.tokenizer.batch_decode(tokens, skip_special_tokens=True)

    examples = [plan.examples[q] for q in questions for _ in plan.specs]
    frame = pd.DataFrame(
        {
            "question_id": [e.id for e in examples],
            "path_id": [p for _ in questions for p in range(len(plan.specs))],
            "schedule": [schedule_of(spec) for _, spec in rows],
            "path_label": [spec.label for _, spec in rows],
            "block_sizes": [list(spec.block_sizes) for _, spec in rows],
            "steps": [spec.steps for _, spec in rows],
            "seed": [spec.seed for _, spec in rows],
            "temperature": [spec.temperature for _, spec in rows],
            "remasking": [spec.remasking for _, spec in rows],
            "text": texts,
            "gold": [e.gold for e in examples],
            "nll": nll,
            "nfe": trajectories.nfe.astype("int64"),
            "chunk": index,
            "trajectory_row": range(len(rows)),
            "seconds": seconds / len(rows),
        }
    )
    labels = [e.labels or None for e in examples]
    graded = grade_texts(examples[0].task, texts, frame["gold"].tolist(), labels)
    frame = pd.concat([frame, graded], axis=1)
    buffer = io.BytesIO()
    trajectories.save(buffer)
    return frame, buffer.getvalue()


def merge(run_dir: Path) -> dict:
    """Merge a run's chunks into paths.parquet, votes.parquet and metrics.json."""
    run_dir = Path(run_dir)
    config = store.read_config(run_dir)
    n_chunks = math.ceil(config["n_questions"] / config["chunk_questions"])
    paths = store.read_chunks(run_dir, n_chunks)
    votes = vote_table(paths, tie_rule=config["tie_rule"])
    metrics = run_metrics(paths, votes)
    wall = float(paths["seconds"].sum())
    metrics.update(
        {
            "model": config["model"],
            "dataset": config["dataset"],
            "decode_seconds": round(wall, 2),
            "tokens_per_second": round(len(paths) * config["gen_length"] / wall, 1)
            if wall
            else None,
        }
    )
    store.atomic_write_parquet(run_dir / store.PATHS, paths)
    store.atomic_write_parquet(run_dir / store.VOTES, votes)
    store.atomic_write_json(run_dir / store.METRICS, metrics)
    logger.info("merged %d chunks of %s: accuracy %.3f", n_chunks, run_dir, metrics["accuracy"])
    return metrics


def load_trajectories(run_dir: Path, question_id: str, path_id: int):
    """Load the `Trajectories` of one (question, path) of a run directory."""
    from hexlab.decode import Trajectories

    paths = pd.read_parquet(
        Path(run_dir) / store.PATHS, columns=["question_id", "path_id", "chunk", "trajectory_row"]
    )
    hit = paths[(paths["question_id"] == str(question_id)) & (paths["path_id"] == path_id)]
    if hit.empty:
        raise KeyError(f"question {question_id!r}, path {path_id} is not in {run_dir}")
    chunk, row = int(hit["chunk"].iloc[0]), int(hit["trajectory_row"].iloc[0])
    npz = Path(run_dir) / store.CHUNKS / f"{store.chunk_stem(chunk)}.npz"
    return Trajectories.load(npz, rows=[row])


def summary_table(metrics: dict) -> str:
    """Format a run's metrics as a plain-text table for the terminal."""
    lines = [f"{'schedule':<28} {'accuracy':>9}"]
    for schedule, accuracy in metrics.get("single_path_accuracy", {}).items():
        lines.append(f"{schedule:<28} {100 * accuracy:>8.1f}%")
    lines.append("-" * 38)
    rows = [
        ("HEX vote", metrics["accuracy"]),
        ("mean single path", metrics["mean_single_path_accuracy"]),
        ("coverage (any path)", metrics["coverage"]),
        ("tie rate", metrics["tie_rate"]),
        ("collapse rate", metrics["collapse_rate"]),
    ]
    lines += [f"{name:<28} {100 * value:>8.1f}%" for name, value in rows]
    if "forward_passes" in metrics:
        lines.append(f"{'forward passes':<28} {metrics['forward_passes']:>9,}")
    lines.append(f"questions: {metrics['n_questions']}, paths: {metrics['n_paths']}")
    return "\n".join(lines)


def demo(out: Path, limit: int = 200, batch_size: int = 128) -> dict:
    """HEX on the toy model: 25 paths on `limit` toy problems, a table and a scaling plot."""
    config = RunConfig(
        model="toy",
        dataset="toy",
        paths="hex25",
        out=Path(out),
        limit=limit,
        batch_size=batch_size,
        device="cpu",
    )
    start = time.perf_counter()
    result = run(config)
    print(summary_table(result.metrics))
    figure_file = plot_accuracy_vs_paths(result.run_dir)
    print(f"run directory: {result.run_dir}\naccuracy vs paths: {figure_file}")
    print(f"wall time: {time.perf_counter() - start:.0f} s")
    return result.metrics


def plot_accuracy_vs_paths(run_dir: Path) -> Path:
    """Save accuracy and tie rate against the number of paths (PNG and PDF) in the run directory."""
    from hexlab.figures import plot_scaling_curves, save_figure
    from hexlab.scaling import ScalingConfig, load_run, scaling_curves

    paths, _ = load_run(run_dir)
    curves = scaling_curves(paths, ScalingConfig(draws=200, bootstrap=200, seed=0))
    figure = plot_scaling_curves(curves, methods=("prefix", "random"))
    return save_figure(figure, Path(run_dir) / "accuracy_vs_paths")[0]
