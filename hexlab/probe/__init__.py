"""Expert probing: the distribution a masked diffusion LM gives a target for each visible set.

A masked diffusion LM trained on every masking pattern learns one conditional
p(x_t | prompt, x[U]) per set U of visible answer tokens, so it is an implicit mixture of experts.
`probe_experts` shows every subset U of some candidate answer positions, masks the rest of the
answer window and reads the distribution at the target positions:

    from hexlab.models import load_model
    from hexlab.probe import ProbeSpec, probe_experts, agreement, mixture_summary

    lm = load_model("toy")
    spec = ProbeSpec(prompt=question, answer=reference, targets=[3], visible=[0, 1, 2],
                     prefill="<reasoning>", gen_length=32)
    result = probe_experts(lm, spec)          # result.experts: one row per (U, target)
    agreement(result)                         # share of experts whose mode is the reference, JS
    mixture_summary(result)                   # mixtures under the uniform and size gates

Modules: `contexts` (checking a request, enumerating subsets, canvases), `experts` (the batched
forward passes), `summary` (agreement, gates, mixtures), `sweep` (block-size sweep and semi-AR
gate through `hexlab.decode`), `plots` (figures).
"""

from hexlab.probe.contexts import (
    EXHAUSTIVE_LIMIT,
    ProbeConfig,
    ProbeSpec,
    ResolvedProbe,
    build_canvases,
    enumerate_subsets,
    format_visible,
    parse_visible,
    resolve_probe,
)
from hexlab.probe.experts import ProbeResult, probe_experts
from hexlab.probe.plots import (
    plot_block_size_sweep,
    plot_expert_distributions,
    plot_reference_heatmap,
)
from hexlab.probe.summary import (
    agreement,
    check_gate,
    default_gates,
    js_divergence,
    mean_pairwise_js,
    mix_distributions,
    mixture,
    mixture_summary,
    pairwise_js,
    size_gate,
    uniform_gate,
)
from hexlab.probe.sweep import (
    SweepConfig,
    block_size_sweep,
    decode_block_sizes,
    revealed_visible_sets,
    semi_ar_gate,
    sweep_paths,
)

__all__ = [
    "EXHAUSTIVE_LIMIT",
    "ProbeConfig",
    "ProbeResult",
    "ProbeSpec",
    "ResolvedProbe",
    "SweepConfig",
    "agreement",
    "block_size_sweep",
    "build_canvases",
    "check_gate",
    "decode_block_sizes",
    "default_gates",
    "enumerate_subsets",
    "format_visible",
    "js_divergence",
    "mean_pairwise_js",
    "mix_distributions",
    "mixture",
    "mixture_summary",
    "pairwise_js",
    "parse_visible",
    "plot_block_size_sweep",
    "plot_expert_distributions",
    "plot_reference_heatmap",
    "probe_experts",
    "resolve_probe",
    "revealed_visible_sets",
    "semi_ar_gate",
    "size_gate",
    "sweep_paths",
    "uniform_gate",
]
