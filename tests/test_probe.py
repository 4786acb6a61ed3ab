"""Expert probing: enumeration, canvases, exactness against direct forward passes, mixtures,
divergences, input checks, figures and the `hexlab probe` command.

Most tests run the tiny random model. Its distributions differ between contexts but mean nothing,
so the checks are on plumbing and exactness. The CLI tests run the shipped toy model.
"""

from __future__ import annotations

import argparse
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from hexlab.cli import COMMAND_MODULES
from hexlab.probe import (
    ProbeConfig,
    ProbeSpec,
    SweepConfig,
    agreement,
    block_size_sweep,
    build_canvases,
    enumerate_subsets,
    js_divergence,
    mean_pairwise_js,
    mix_distributions,
    mixture,
    mixture_summary,
    pairwise_js,
    parse_visible,
    plot_block_size_sweep,
    plot_expert_distributions,
    plot_reference_heatmap,
    probe_experts,
    resolve_probe,
    semi_ar_gate,
    size_gate,
    uniform_gate,
)
from hexlab.probe_cli import parse_positions, register

QUESTION = "Mia has 34 apples. She buys 27 more. How many apples does Mia have?"
ANSWER = "34+27=61</reasoning><answer>\\boxed{61}</answer><|eot_id|>"  # 16 tokens
TWO_STEP_ANSWER = "34+27=61\n61-15=46</reasoning><answer>\\boxed{46}</answer><|eot_id|>"  # 25


def make_spec(**changes) -> ProbeSpec:
    fields = dict(
        prompt=QUESTION,
        answer=ANSWER,
        targets=[6],
        visible=[0, 1, 2],
        prefill="<reasoning>",
        gen_length=32,
    )
    fields.update(changes)
    return ProbeSpec(**fields)


def run_probe_command(argv: list[str]) -> int:
    """Run `hexlab probe` through its own parser, so other commands' imports play no part."""
    parser = argparse.ArgumentParser(prog="hexlab")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def full_result(tiny_lm):
    """All 16 subsets of 4 candidates, two targets, whole distributions kept."""
    spec = make_spec(targets=[5, 6], visible=[0, 1, 3, 8])
    return probe_experts(tiny_lm, spec, ProbeConfig(top_k=3, full=True, batch_size=5))


def test_enumeration_lists_every_subset_once():
    subsets = enumerate_subsets(3)
    # 2^3 = 8 rows; row 5 = binary 101 shows candidates 0 and 2
    assert subsets.shape == (8, 3)
    assert len({tuple(row) for row in subsets}) == 8
    assert subsets[5].tolist() == [True, False, True]
    assert enumerate_subsets(0).shape == (1, 0)


def test_sampling_draws_distinct_seeded_subsets():
    first = enumerate_subsets(20, sample=50, seed=3)
    assert first.shape == (50, 20)
    assert len({tuple(row) for row in first}) == 50
    np.testing.assert_array_equal(first, enumerate_subsets(20, sample=50, seed=3))
    assert not np.array_equal(first, enumerate_subsets(20, sample=50, seed=4))
    # asking for more than the 2^3 = 8 subsets lists them all
    assert enumerate_subsets(3, sample=100).shape == (8, 3)


def test_canvases_show_and_mask_positions(tiny_lm):
    probe = resolve_probe(tiny_lm, make_spec(visible=[0, 2, 4], targets=[3]))
    subsets = enumerate_subsets(3)
    canvases = build_canvases(probe, subsets, tiny_lm.mask_token_id)  # (8, P + 32)
    prompt_length = probe.prompt_length
    assert canvases.shape == (8, prompt_length + 32)
    assert len(probe.answer_ids) == 32
    for row, shown in zip(canvases, subsets, strict=True):
        assert row[:prompt_length].tolist() == list(probe.prompt_ids)
        window = row[prompt_length:].tolist()
        visible = {p for p, on in zip(probe.candidates, shown, strict=True) if on}
        for position, token in enumerate(window):
            expected = probe.answer_ids[position] if position in visible else tiny_lm.mask_token_id
            assert token == expected, f"position {position} with visible set {visible}"
    assert len({tuple(row.tolist()) for row in canvases}) == 8


def test_answer_is_padded_with_end_of_text(tiny_lm):
    probe = resolve_probe(tiny_lm, make_spec())
    answer = tiny_lm.tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    assert list(probe.answer_ids[: len(answer)]) == answer
    assert set(probe.answer_ids[len(answer) :]) == {tiny_lm.eos_token_id}


def test_context_matches_direct_forward_pass(tiny_lm, full_result):
    probe = full_result.probe
    # context 11 = binary 1011 shows candidates 0, 1 and 3, which are positions 0, 1 and 8
    assert full_result.contexts.loc[11, "visible"] == "{0,1,8}"
    window = [tiny_lm.mask_token_id] * 32
    for position in (0, 1, 8):
        window[position] = probe.answer_ids[position]
    canvas = torch.tensor([list(probe.prompt_ids) + window])  # (1, L)
    logits = tiny_lm.logits(canvas, torch.ones_like(canvas))  # (1, L, V)
    for index, target in enumerate(probe.targets):
        expected = logits[0, probe.prompt_length + target].softmax(-1)
        torch.testing.assert_close(full_result.distributions[11, index], expected)
        row = full_result.experts.query(f"context == 11 and target == {target}").iloc[0]
        reference = probe.answer_ids[target]
        assert row["reference_probability"] == pytest.approx(float(expected[reference]), abs=1e-6)
        assert row["argmax_id"] == int(expected.argmax())
        assert row["reference_rank"] == int((expected > expected[reference]).sum()) + 1
        entropy = -float((expected * expected.log()).sum())
        assert row["entropy"] == pytest.approx(entropy, abs=1e-5)


def test_batch_size_does_not_change_results(tiny_lm):
    spec = make_spec(visible=[0, 1, 2, 4], targets=[3, 7])
    one = probe_experts(tiny_lm, spec, ProbeConfig(top_k=4, batch_size=1))
    seven = probe_experts(tiny_lm, spec, ProbeConfig(top_k=4, batch_size=7))
    pd.testing.assert_frame_equal(one.experts, seven.experts, atol=1e-6, rtol=0)
    pd.testing.assert_frame_equal(one.tokens, seven.tokens, atol=1e-6, rtol=0)
    torch.testing.assert_close(one.size_sums, seven.size_sums)


def test_top_k_table_keeps_reference(tiny_lm):
    result = probe_experts(tiny_lm, make_spec(), ProbeConfig(top_k=1))
    # 8 contexts x 1 target: one top-1 row each, plus a row for the reference when it is not top-1
    per_context = result.tokens.groupby("context").size()
    expected = np.where(result.experts["argmax_is_reference"], 1, 2)
    assert per_context.tolist() == expected.tolist()
    references = result.tokens[result.tokens["is_reference"]]
    assert len(references) == 8
    merged = references.merge(result.experts, on=["context", "target"])
    np.testing.assert_allclose(merged["probability"], merged["reference_probability"])
    assert (merged["rank"] == merged["reference_rank"]).all()


def test_full_frame_lists_every_token(full_result):
    frame = full_result.distribution_frame()
    # 16 contexts x 2 targets x V tokens; each distribution sums to 1
    vocab = full_result.distributions.shape[-1]
    assert len(frame) == 16 * 2 * vocab
    sums = frame.groupby(["context", "target"])["probability"].sum()
    np.testing.assert_allclose(sums, 1.0, atol=1e-5)
    # exactly one reference row per context and target
    assert frame["is_reference"].sum() == 16 * 2


def test_size_gate_weights_sizes_equally():
    contexts = pd.DataFrame({"context": [0, 1, 2, 3], "size": [0, 1, 1, 2]})
    gate = size_gate(contexts, targets=[4])
    # three sizes get 1/3 each; size 1 splits its third over two contexts: 1/6 each
    np.testing.assert_allclose(gate["weight"], [1 / 3, 1 / 6, 1 / 6, 1 / 3])
    np.testing.assert_allclose(uniform_gate(contexts, targets=[4])["weight"], [0.25] * 4)


def test_mixtures_match_hand_arithmetic():
    contexts = pd.DataFrame({"context": [0, 1, 2, 3], "size": [0, 1, 1, 2]})
    # token 10 has probability 0.9, 0.5, 0.1, 0.7 in contexts 0..3; token 20 has the rest
    table = pd.DataFrame(
        {
            "context": [0, 0, 1, 1, 2, 2, 3, 3],
            "target": 4,
            "token_id": [10, 20] * 4,
            "probability": [0.9, 0.1, 0.5, 0.5, 0.1, 0.9, 0.7, 0.3],
        }
    )
    uniform = mix_distributions(table, uniform_gate(contexts, [4])).set_index("token_id")
    # (0.9 + 0.5 + 0.1 + 0.7) / 4 = 0.55
    assert uniform.loc[10, "probability"] == pytest.approx(0.55)
    assert uniform.loc[20, "probability"] == pytest.approx(0.45)
    by_size = mix_distributions(table, size_gate(contexts, [4])).set_index("token_id")
    # 0.9/3 + 0.5/6 + 0.1/6 + 0.7/3 = 0.3 + 0.0833 + 0.0167 + 0.2333 = 0.6333
    assert by_size.loc[10, "probability"] == pytest.approx(0.9 / 3 + 0.6 / 6 + 0.7 / 3)
    assert list(by_size.index) == [10, 20]


def test_exact_mixture_paths_agree(tiny_lm, full_result):
    spec = make_spec(targets=[5, 6], visible=[0, 1, 3, 8])
    top = probe_experts(tiny_lm, spec, ProbeConfig(top_k=3, batch_size=5))
    for gate in (uniform_gate, size_gate):
        weights = gate(full_result.contexts, full_result.probe.targets)
        from_full = mixture(full_result, weights)
        from_sizes = mixture(top, weights)
        pd.testing.assert_frame_equal(from_full, from_sizes, atol=1e-9, rtol=0)
    # the uniform mixture is the mean of the 16 distributions
    uniform = mixture(full_result, uniform_gate(full_result.contexts, [5, 6]))
    mean = full_result.distributions[:, 0].double().mean(dim=0)  # (V,)
    first = uniform[uniform["target"] == 5].sort_values("token_id")["probability"].to_numpy()
    np.testing.assert_allclose(first, mean.numpy(), atol=1e-9)


def test_mixture_summary_rows(full_result):
    summary = mixture_summary(full_result)
    assert summary[["gate", "target"]].values.tolist() == [
        ["uniform", 5],
        ["uniform", 6],
        ["size", 5],
        ["size", 6],
    ]
    assert summary["reference_probability"].between(0, 1).all()


def test_js_divergence_properties():
    p = torch.tensor([0.7, 0.2, 0.1])
    q = torch.tensor([0.1, 0.3, 0.6])
    assert float(js_divergence(p, p)) == pytest.approx(0.0, abs=1e-12)
    assert float(js_divergence(p, q)) == pytest.approx(float(js_divergence(q, p)))
    # disjoint supports are 1 bit apart
    assert float(js_divergence(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))) == 1.0
    # p = (1, 0), q = (1/2, 1/2): m = (3/4, 1/4), H(m) = 0.8113 bits, H(p) = 0, H(q) = 1 bit
    value = js_divergence(torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5]))
    entropy_m = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert float(value) == pytest.approx(entropy_m - 0.5)


def test_pairwise_js_symmetric_zero_diagonal():
    distributions = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.7, 0.2, 0.1]])
    matrix = pairwise_js(distributions)
    torch.testing.assert_close(matrix, matrix.T)
    assert torch.all(matrix.diagonal() == 0)
    assert float(matrix[0, 2]) == pytest.approx(0.0, abs=1e-12)
    # pairs (0,1), (0,2), (1,2): mean = (d + 0 + d) / 3
    mean, pairs = mean_pairwise_js(distributions)
    assert pairs == 3
    assert mean == pytest.approx(2 * float(matrix[0, 1]) / 3)


def test_agreement_share_of_reference_modes(full_result):
    table = agreement(full_result)
    assert table["target"].tolist() == [5, 6]
    experts = full_result.experts
    share = experts[experts["target"] == 5]["argmax_is_reference"].mean()
    assert table.loc[0, "share_argmax_reference"] == pytest.approx(share)
    assert (table["js_source"] == "full").all()
    assert table["mean_js"].between(0, 1).all()


@pytest.mark.parametrize(
    ("changes", "config", "message"),
    [
        (dict(targets=[32]), {}, "target positions [32] are outside the answer window of 32"),
        (dict(targets=[2], visible=[0, 1, 2]), {}, "positions [2] are both targets and visible"),
        (dict(visible=list(range(17)), targets=[20]), {}, "2^17 contexts"),
        (dict(gen_length=8), {}, "tokenizes to 16 tokens, more than the answer window"),
        (dict(gen_length=None, targets=[25]), {}, "outside the answer window of 16 tokens"),
        (dict(answer=[5, 3]), {}, "contains the mask token"),
        (dict(prompt=[1, 5, 6]), {}, "prefill '<reasoning>' applies only to a text prompt"),
        (dict(targets=[]), {}, "no target positions"),
        (dict(visible=[0, 0]), {}, "repeat a position"),
        ({}, dict(top_k=0), "top_k must be at least 1"),
    ],
)
def test_bad_input_raises(tiny_lm, changes, config, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        probe_experts(tiny_lm, make_spec(**changes), ProbeConfig(**config))


def test_probe_samples_many_candidates(tiny_lm):
    spec = make_spec(visible=list(range(18)), targets=[19])
    result = probe_experts(tiny_lm, spec, ProbeConfig(sample=6, seed=1, batch_size=4))
    assert len(result.contexts) == 6
    assert result.contexts["visible"].nunique() == 6
    assert all(len(parse_visible(v)) == s for v, s in result.contexts[["visible", "size"]].values)


def test_figures_build(full_result):
    panels = plot_expert_distributions(full_result.tokens, target=6)
    assert isinstance(panels, Figure)
    assert len([a for a in panels.axes if a.get_visible()]) == 16

    # 32 contexts is above the 16-panel limit, so one panel of lines
    lines = plot_expert_distributions(
        pd.concat(
            [
                full_result.tokens,
                full_result.tokens.assign(context=full_result.tokens["context"] + 16),
            ]
        )
    )
    assert len(lines.axes) == 2  # the panel and its colour bar

    from_full_frame = plot_expert_distributions(full_result.distribution_frame(), target=5)
    assert len([a for a in from_full_frame.axes if a.get_visible()]) == 16

    heatmap = plot_reference_heatmap(full_result.experts, target=5)
    # 4 candidates split 2 + 2: a 4 x 4 grid of subsets
    assert heatmap.axes[0].images[0].get_array().shape == (4, 4)

    sweep = pd.DataFrame(
        {
            "block_size": [2, 2, 8, 8],
            "target": 6,
            "token": ["a", "b", "a", "b"],
            "probability": [0.6, 0.3, 0.2, 0.7],
            "is_reference": [True, False, True, False],
        }
    )
    assert isinstance(plot_block_size_sweep(sweep), Figure)
    with pytest.raises(ValueError, match="target 9 is not in the frame"):
        plot_reference_heatmap(full_result.experts, target=9)


def test_positions_parse_lists_and_ranges():
    assert parse_positions("3") == [3]
    assert parse_positions("0,1,2") == [0, 1, 2]
    assert parse_positions("0-3,7") == [0, 1, 2, 3, 7]


def probe_argv(answer: str, options: str) -> list[str]:
    """Build `hexlab probe` arguments for QUESTION; `options` must not contain whitespace in a
    value."""
    fixed = ["probe", "--prompt", QUESTION, "--prefill", "<reasoning>", "--answer", answer]
    return fixed + options.split()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_cli_writes_tables_and_figures(tmp_path, capsys, suffix):
    out = tmp_path / f"probe{suffix}"
    figure = tmp_path / "experts.png"
    heatmap = tmp_path / "heatmap.png"
    options = (
        f"--model toy --targets 3 --visible 0,1,2 --top-k 2 --batch-size 3 "
        f"--out {out} --figure {figure} --heatmap {heatmap} --device cpu"
    )
    assert run_probe_command(probe_argv(ANSWER, options)) == 0

    printed = capsys.readouterr().out
    assert "experts (8 visible sets of positions [0, 1, 2])" in printed
    assert "uniform" in printed
    assert "size" in printed

    table = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    # 8 contexts x top 2, plus one row per context whose top 2 miss the reference
    assert table.groupby("context").size().between(2, 3).all()
    assert table["context"].nunique() == 8
    assert out.with_suffix(".json").is_file()
    assert out.with_suffix(".experts" + suffix).is_file()
    assert figure.stat().st_size > 0
    assert heatmap.stat().st_size > 0


def test_cli_full_and_sample_options(tmp_path, capsys):
    out = tmp_path / "full.csv"
    options = (
        "--targets 19 --visible 0-17 --sample 3 --seed 2 --full "
        f"--gen-length 0 --max-rows 1 --out {out} --device cpu"
    )
    assert run_probe_command(probe_argv(TWO_STEP_ANSWER, options)) == 0

    assert "... 2 more rows" in capsys.readouterr().out
    table = pd.read_csv(out)
    # --full writes every token: 3 sampled contexts x 1 target x 152 toy tokens
    assert len(table) == 3 * 152
    # --gen-length 0 keeps the answer's own 25 tokens, so the window has no padding
    settings = pd.read_json(out.with_suffix(".json"), typ="series")
    assert len(settings["answer_ids"]) == 25


def test_cli_rejects_too_many_candidates():
    options = "--targets 20 --visible 0-16 --device cpu"
    with pytest.raises(ValueError, match="exhaustive limit of 16"):
        run_probe_command(probe_argv(ANSWER, options))


def test_cli_registers_the_probe_command():
    assert "hexlab.probe_cli" in COMMAND_MODULES


def test_cli_block_sizes_add_semi_ar_gate(tmp_path, capsys):
    figure = tmp_path / "sweep.png"
    options = (
        "--targets 6 --visible 0-5 --full --block-sizes 2,8,32 "
        f"--sweep-figure {figure} --device cpu"
    )
    assert run_probe_command(probe_argv(ANSWER, options)) == 0

    printed = capsys.readouterr().out
    assert "semi-AR" in printed
    assert "distribution when revealed, by block size" in printed
    assert figure.stat().st_size > 0


SWEEP = SweepConfig(block_sizes=(2, 32), top_k=3)


@pytest.fixture(scope="module")
def sweep_run(tiny_lm):
    spec = make_spec(targets=[6], visible=[0, 1, 2, 3, 4, 5])
    return block_size_sweep(tiny_lm, spec, SWEEP)


def test_block_size_two_reveals_in_order(sweep_run):
    _, revealed, _ = sweep_run
    row = revealed[revealed["block_size"] == 2].iloc[0]
    # 32 positions, 16 steps, blocks of 2 with one step each: step s reveals positions 2s and
    # 2s + 1, so target 6 comes at step 3 after candidates 0..5 (steps 0, 0, 1, 1, 2, 2)
    assert row["reveal_step"] == 3
    assert row["visible"] == "{0,1,2,3,4,5}"


def test_sweep_reads_reveal_step_distribution(tiny_lm, sweep_run):
    sweep, revealed, trajectories = sweep_run
    probe = resolve_probe(tiny_lm, make_spec(targets=[6]))
    for row, block_size in enumerate(SWEEP.block_sizes):
        step = int(revealed.loc[revealed["block_size"] == block_size, "reveal_step"].iloc[0])
        # the canvas the model saw at that step: tokens revealed by earlier steps, masks elsewhere
        earlier = (trajectories.reveal_step[row] >= 0) & (trajectories.reveal_step[row] < step)
        window = np.where(earlier, trajectories.tokens[row], tiny_lm.mask_token_id)
        canvas = torch.tensor([list(probe.prompt_ids) + window.tolist()])  # (1, L)
        logits = tiny_lm.logits(canvas, torch.ones_like(canvas))[0, probe.prompt_length + 6]
        expected = logits.softmax(-1).double()  # (V,)
        rows = sweep[sweep["block_size"] == block_size]
        assert len(rows) in (3, 4)  # top 3, plus the reference when it ranks lower
        for token_id, probability in rows[["token_id", "probability"]].values:
            # float16 records keep about 3 significant digits
            assert probability == pytest.approx(float(expected[int(token_id)]), rel=2e-3, abs=1e-4)


def test_semi_ar_gate_weights_paths_equally(tiny_lm, sweep_run):
    _, revealed, _ = sweep_run
    spec = make_spec(targets=[6], visible=[0, 1, 2, 3, 4, 5])
    result = probe_experts(tiny_lm, spec, ProbeConfig(full=True, batch_size=64))
    gate = semi_ar_gate(result, revealed)
    # two paths, weight 1/2 each; they may expose the same visible set, then it gets 1
    assert gate["weight"].sum() == pytest.approx(1.0)
    everything = result.contexts.loc[result.contexts["visible"] == "{0,1,2,3,4,5}", "context"]
    assert gate.loc[gate["context"] == everything.iloc[0], "weight"].sum() >= 0.5
    mixed = mixture(result, gate)
    assert mixed["probability"].sum() == pytest.approx(1.0)
    assert isinstance(plot_block_size_sweep(sweep_run[0]), Figure)


def test_semi_ar_gate_rejects_unprobed_sets(tiny_lm):
    result = probe_experts(tiny_lm, make_spec(targets=[6], visible=[0]))
    revealed = pd.DataFrame(
        {
            "block_size": [2],
            "seed": [0],
            "target": [6],
            "reveal_step": [3],
            "visible": ["{1,2}"],
            "matches_reference": [True],
        }
    )
    with pytest.raises(ValueError, match="no decoding path exposed a probed visible set"):
        semi_ar_gate(result, revealed)


def test_mean_js_samples_pairs_above_the_limit():
    generator = torch.Generator().manual_seed(0)
    distributions = torch.rand(40, 5, generator=generator).softmax(-1)  # (40, 5)
    exact, pairs = mean_pairwise_js(distributions)
    # 40 rows give 40 * 39 / 2 = 780 pairs, above a limit of 500, so 500 are drawn
    sampled, drawn = mean_pairwise_js(distributions, max_pairs=500, seed=1)
    assert pairs == 780
    assert drawn == 500
    assert sampled == pytest.approx(exact, rel=0.15)


def test_top_k_mixture_is_a_lower_bound(tiny_lm, caplog):
    result = probe_experts(tiny_lm, make_spec(), ProbeConfig(top_k=2))
    # all weight on context 5 varies within size 2, so the per-size sums cannot serve
    gate = pd.DataFrame({"target": [6], "context": [5], "weight": [1.0]})
    with caplog.at_level("WARNING"):
        mixed = mixture(result, gate)
    assert "lower bounds" in caplog.text
    expected = result.tokens[result.tokens["context"] == 5]
    assert sorted(mixed["token_id"]) == sorted(expected["token_id"])
    np.testing.assert_allclose(sorted(mixed["probability"]), sorted(expected["probability"]))
    table = agreement(result)
    assert table.loc[0, "js_source"] == "top-k"
    assert 0 <= table.loc[0, "mean_js"] <= 1
