"""The decoding-trajectory heatmap: when each answer position was revealed, and as what.

A trajectory frame has one row per answer position, with the columns `position` (int, from 0),
`step_revealed` (the 0-based forward pass of the path that unmasked it, NaN if never) and
`token_class` ("text", "eot" for end-of-turn or "eos" for end-of-text). `trajectory_frame` builds
it from the `hexlab.decode.Trajectories` that `hexlab run` stores in its chunk files, and
`run_trajectory` does so for one (question, path) of a run directory. `plot_trajectory` draws it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from hexlab.figures import PALETTE, figure_style

logger = logging.getLogger(__name__)

# Trajectory cell states in colour order: grey for masked, then palette colours.
TOKEN_STATES = ("masked", "text", "eot", "eos")
_STATE_COLOURS = ["#d9d9d9", PALETTE[0], PALETTE[1], PALETTE[4]]
_STATE_TITLES = {
    "masked": "masked",
    "text": "text token",
    "eot": "end-of-turn",
    "eos": "end-of-text",
}


def trajectory_frame(
    trajectories, eos_token_id: int, eot_token_id: int | None = None, index: int = 0
) -> pd.DataFrame:
    """Build the trajectory frame of one row of a `hexlab.decode.Trajectories`.

    `index` is the array index of the row (0 for the single row `load_trajectories` returns).
    A position never revealed (`reveal_step` -1) gets NaN. Tokens other than the two stop ids
    count as text.
    """
    tokens = np.asarray(trajectories.tokens)  # (R, G)
    reveal_step = np.asarray(trajectories.reveal_step)  # (R, G)
    if tokens.ndim != 2 or tokens.shape != reveal_step.shape:
        raise ValueError(
            f"tokens and reveal_step must share one (rows, positions) shape, got "
            f"{tokens.shape} and {reveal_step.shape}"
        )
    row_tokens, row_steps = tokens[index], reveal_step[index].astype(float)  # (G,)
    token_class = np.full(row_tokens.shape, "text", dtype=object)
    if eot_token_id is not None:
        token_class[row_tokens == eot_token_id] = "eot"
    token_class[row_tokens == eos_token_id] = "eos"
    return pd.DataFrame(
        {
            "position": np.arange(len(row_tokens)),
            "step_revealed": np.where(row_steps < 0, np.nan, row_steps),
            "token_class": token_class,
        }
    )


def model_stop_ids(model: str) -> tuple[int, int | None]:
    """Load `model` on the CPU and return its end-of-text and end-of-turn token ids.

    NOTE: this loads the weights as well as the tokenizer, which takes tens of GB of memory for an
    8B model. Pass the ids to `run_trajectory` to skip the loading.
    """
    from hexlab.models import load_model

    lm = load_model(model, device="cpu")
    return lm.eos_token_id, lm.eot_token_id


def run_trajectory(
    run_dir: str | Path,
    question_id: str,
    path_id: int,
    stop_ids: tuple[int, int | None] | None = None,
) -> tuple[pd.DataFrame, int, str]:
    """Read one path's trajectory from a run directory written by `hexlab run`.

    `stop_ids` is (eos_token_id, eot_token_id); None reads them from the run's model. Returns the
    trajectory frame, the path's number of forward passes and a title naming the path.
    """
    from hexlab.runs.job import load_trajectories
    from hexlab.runs.store import read_config

    run_dir = Path(run_dir)
    if not (run_dir / "chunks").is_dir():
        raise FileNotFoundError(
            f"{run_dir} has no chunks/ folder with trajectories; imported runs store none, so "
            f"pass a directory written by `hexlab run`"
        )
    trajectories = load_trajectories(run_dir, question_id, path_id)
    if stop_ids is None:
        stop_ids = model_stop_ids(read_config(run_dir)["model"])
    frame = trajectory_frame(trajectories, *stop_ids)
    title = f"question {question_id}, path {path_id} ({trajectories.specs[0].label})"
    return frame, int(trajectories.nfe[0]), title


def trajectory_states(trajectory: pd.DataFrame, num_steps: int) -> np.ndarray:
    """Build the (step, position) grid of state codes, indexing `TOKEN_STATES`.

    `trajectory` has one row per answer position, with columns `position` (int, from 0),
    `step_revealed` (the 0-based decoding step that unmasked it, NaN if never) and `token_class`
    ("text", "eot" for end-of-turn or "eos" for end-of-text). A position shows as masked at
    steps before `step_revealed` and as its class from then on. Positions absent from the
    frame stay masked.
    """
    missing = {"position", "step_revealed", "token_class"} - set(trajectory.columns)
    if missing:
        raise ValueError(f"trajectory frame lacks the columns {sorted(missing)}")
    unknown = set(trajectory["token_class"]) - set(TOKEN_STATES[1:])
    if unknown:
        raise ValueError(f"invalid token_class values {sorted(unknown)}; use text, eot or eos")
    revealed = trajectory["step_revealed"].to_numpy(dtype=float)
    if np.nanmax(revealed, initial=0) >= num_steps or np.nanmin(revealed, initial=0) < 0:
        raise ValueError(f"step_revealed must lie in [0, {num_steps}), the number of steps")
    num_positions = int(trajectory["position"].max()) + 1
    grid = np.zeros((num_steps, num_positions), dtype=int)
    steps = np.arange(num_steps)[:, None]
    codes = trajectory["token_class"].map(TOKEN_STATES.index).to_numpy()
    visible = steps >= np.where(np.isnan(revealed), num_steps, revealed)[None, :]
    grid[:, trajectory["position"].to_numpy()] = np.where(visible, codes[None, :], 0)
    return grid


def plot_trajectory(trajectory: pd.DataFrame, num_steps: int, title: str = "") -> Figure:
    """Plot a decoding trajectory as a heatmap: answer position (x) by decoding step (y).

    See `trajectory_states` for the frame's columns. Each cell is coloured by state: masked, text
    token, end-of-turn or end-of-text.
    """
    grid = trajectory_states(trajectory, num_steps)
    colour_map = mpl.colors.ListedColormap(_STATE_COLOURS)
    with figure_style():
        # About 0.08 inch per answer position and 0.12 per step, within readable bounds.
        width = min(12.0, max(5.0, 2.0 + 0.08 * grid.shape[1]))
        height = min(8.0, max(2.8, 2.0 + 0.12 * num_steps))
        figure = Figure(figsize=(width, height), layout="constrained")
        axes = figure.subplots()
        axes.imshow(grid, cmap=colour_map, vmin=0, vmax=len(TOKEN_STATES) - 1, aspect="auto")
        axes.grid(False)
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("Answer position")
        axes.set_ylabel("Decoding step")
        axes.set_title(title)
        handles = [
            Patch(color=colour, label=_STATE_TITLES[state])
            for state, colour in zip(TOKEN_STATES, _STATE_COLOURS, strict=True)
        ]
        figure.legend(handles=handles, loc="outside lower center", ncols=len(handles))
    return figure
