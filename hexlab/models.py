"""Loading masked diffusion LMs behind one interface.

`load_model(name)` returns a `DiffusionLM`: the network, its tokenizer, the special token ids the
decoders need (mask, end of text, end of turn), prompt formatting through the chat template, and a
`logits(input_ids, attention_mask)` call that returns (B, L, V) scores for the token at each
position. Profiles hold what differs between model families; ids are read from the tokenizer and
config first, and the profile's ids are only a fallback.

Known profiles: LLaDA-8B-Instruct, LLaDA-8B-Base, LLaDA-1.5, Dream-v0-Instruct-7B, the toy model
shipped with hexlab, and any local folder that holds a transformers masked LM.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

ABSOLUTE_POSITION_TYPES = ("bert", "electra")
TOY_CHECKPOINT = Path(__file__).parent / "toy" / "checkpoint"


@dataclasses.dataclass(frozen=True)
class Profile:
    """Settings of a model family beyond its weights."""

    name: str
    source: str  # a hub id or a local folder
    family: str  # "llada", "dream", "toy" or "masked-lm"
    trust_remote_code: bool = False
    # Fallback ids, used only when the tokenizer and config do not define the token.
    mask_token: str | None = None
    mask_token_id: int | None = None
    eos_token_id: int | None = None
    eot_token: str | None = None
    eot_token_id: int | None = None
    # Dream's logits at position i score the token at position i + 1.
    shift_logits: bool = False
    # Default answer window and forward passes for this family's `hexlab run`.
    gen_length: int = 256
    steps: int = 128


LLADA_IDS = dict(
    mask_token="<|mdm_mask|>",
    mask_token_id=126336,
    eos_token_id=126081,
    eot_token="<|eot_id|>",
    eot_token_id=126348,
)

PROFILES: dict[str, Profile] = {
    "llada-8b-instruct": Profile(
        "llada-8b-instruct", "GSAI-ML/LLaDA-8B-Instruct", "llada", True, **LLADA_IDS
    ),
    "llada-8b-base": Profile("llada-8b-base", "GSAI-ML/LLaDA-8B-Base", "llada", True, **LLADA_IDS),
    "llada-1.5": Profile("llada-1.5", "GSAI-ML/LLaDA-1.5", "llada", True, **LLADA_IDS),
    "dream-7b-instruct": Profile(
        "dream-7b-instruct",
        "Dream-org/Dream-v0-Instruct-7B",
        "dream",
        True,
        mask_token="<|mask|>",
        mask_token_id=151666,
        eos_token_id=151643,
        eot_token="<|im_end|>",
        eot_token_id=151645,
        shift_logits=True,
    ),
    "toy": Profile(
        "toy",
        str(TOY_CHECKPOINT),
        "toy",
        mask_token="<|mdm_mask|>",
        eot_token="<|eot_id|>",
        gen_length=32,
        steps=16,
    ),
}

# Hub ids and short forms that name a known profile.
ALIASES = {profile.source.lower(): key for key, profile in PROFILES.items() if key != "toy"}
ALIASES.update({"llada": "llada-8b-instruct", "dream": "dream-7b-instruct"})


def resolve_profile(name: str) -> Profile:
    """Return the profile for a profile name, a hub id or a local folder.

    Raises ValueError naming the known profiles when `name` is none of these.
    """
    key = name.lower()
    if key in PROFILES:
        return PROFILES[key]
    if key in ALIASES:
        return PROFILES[ALIASES[key]]
    path = Path(name).expanduser()
    if path.is_dir():
        return _profile_for_folder(path)
    known = ", ".join(sorted(PROFILES))
    raise ValueError(
        f"unknown model {name!r}: known profiles are {known} (hub ids such as "
        f"GSAI-ML/LLaDA-8B-Instruct also work); a local folder holding a transformers "
        f"masked LM and its tokenizer works too"
    )


def _profile_for_folder(path: Path) -> Profile:
    """Pick a family for a local folder from its config's model type or architecture."""
    import json

    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(
            f"model folder {path} has no config.json; save the model with save_pretrained()"
        )
    config = json.loads(config_file.read_text())
    model_type = str(config.get("model_type", "")).lower()
    architectures = " ".join(config.get("architectures") or []).lower()
    for family, key in (("llada", "llada-8b-instruct"), ("dream", "dream-7b-instruct")):
        base = PROFILES[key]
        if family in model_type or family in architectures:
            return dataclasses.replace(base, name=str(path), source=str(path))
    if (path / "hexlab_toy.json").is_file():
        return dataclasses.replace(PROFILES["toy"], name=str(path), source=str(path))
    return Profile(name=str(path), source=str(path), family="masked-lm")


def resolve_device(device: str | None) -> torch.device:
    """Return the requested device, or CUDA when present and CPU otherwise."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {device!r} requested but torch finds no CUDA GPU on this machine; "
            f"pass --device cpu"
        )
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """Return bf16 on CUDA and float32 on CPU unless a dtype is given."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    names = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}: use one of {', '.join(names)}")
    return names[dtype]


class DiffusionLM:
    """A masked diffusion LM with the ids and calls the decoders need.

    Attributes:
        model: the torch module, in eval mode.
        tokenizer: its transformers tokenizer.
        profile: the `Profile` it was loaded with.
        mask_token_id: id of the mask token that marks unknown positions.
        eos_token_id: end-of-text id, also the padding an answer window ends with.
        eot_token_id: end-of-turn id, or None when the tokenizer has none.
        max_length: longest canvas (prompt plus answer) the model accepts, or None if unbounded.
    """

    def __init__(self, model: torch.nn.Module, tokenizer, profile: Profile):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.profile = profile
        self.mask_token_id = _lookup_id(
            tokenizer, model, "mask", profile.mask_token, profile.mask_token_id
        )
        self.eos_token_id = _lookup_id(tokenizer, model, "eos", None, profile.eos_token_id)
        self.eot_token_id = _lookup_id(
            tokenizer, model, "eot", profile.eot_token, profile.eot_token_id, required=False
        )
        config = getattr(model, "config", None)
        # NOTE: left padding is corrected only for these learned-position families; other
        # absolute-position masked LMs would see shifted positions in padded rows.
        self._absolute_positions = getattr(config, "model_type", None) in ABSOLUTE_POSITION_TYPES
        self.max_length = getattr(config, "max_position_embeddings", None) or getattr(
            config, "max_sequence_length", None
        )

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def vocab_size(self) -> int:
        return (
            int(self.model.get_output_embeddings().weight.shape[0])
            if hasattr(self.model, "get_output_embeddings")
            and self.model.get_output_embeddings() is not None
            else len(self.tokenizer)
        )

    @property
    def stop_token_ids(self) -> list[int]:
        """End-of-text and end-of-turn ids: tokens that end an answer."""
        return [i for i in (self.eos_token_id, self.eot_token_id) if i is not None]

    def format_prompt(self, user_message: str, prefill: str = "") -> str:
        """Render one user turn through the chat template, then append `prefill`.

        A tokenizer without a chat template (a base model) gets the message as plain text.
        """
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": user_message}],
                tokenize=False,
                add_generation_prompt=True,
            )
        else:
            text = user_message + "\n"
        return text + prefill

    def encode_prompt(self, user_message: str, prefill: str = "") -> list[int]:
        """Token ids of `format_prompt(user_message, prefill)`; the template adds BOS itself."""
        text = self.format_prompt(user_message, prefill)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    @torch.inference_mode()
    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        """Score every position of a canvas.

        Args:
            input_ids: (B, L) int64 token ids, prompt then answer window, left-padded.
            attention_mask: (B, L) bool or int, True/1 on real tokens and False/0 on padding.

        Returns:
            (B, L, V) logits in the model's dtype; position i scores the token at position i.
        """
        assert input_ids.ndim == 2, f"input_ids must be (B, L), got {tuple(input_ids.shape)}"
        kwargs = {}
        if attention_mask is not None:
            attention_mask = attention_mask.to(device=input_ids.device, dtype=torch.long)
            kwargs["attention_mask"] = attention_mask
            if self._absolute_positions:
                # Count positions from the first real token so left padding does not shift them.
                # Rotary models (LLaDA, Dream) see only relative offsets and need no correction.
                kwargs["position_ids"] = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        logits = self.model(input_ids=input_ids, **kwargs).logits
        if self.profile.shift_logits:
            # Dream predicts the next token: the score for position i sits at i - 1.
            logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
        return logits


def _lookup_id(
    tokenizer, model, kind: str, token: str | None, fallback: int | None, required: bool = True
) -> int | None:
    """Find a special token id in the tokenizer, then the config, then the profile."""
    candidates = []
    if kind == "mask":
        candidates.append(getattr(tokenizer, "mask_token_id", None))
    if kind == "eos":
        candidates.append(getattr(tokenizer, "eos_token_id", None))
    if token is not None:
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is not None and token_id != getattr(tokenizer, "unk_token_id", None):
            candidates.append(token_id)
    config = getattr(model, "config", None)
    candidates.append(getattr(config, f"{kind}_token_id", None))
    candidates.append(fallback)
    for candidate in candidates:
        if isinstance(candidate, int):
            return candidate
    if required:
        raise ValueError(
            f"cannot find the {kind} token id in the tokenizer, the config or the profile; "
            f"add it to the tokenizer's special tokens"
        )
    return None


def load_model(
    name: str = "toy", device: str | None = None, dtype: str | torch.dtype | None = None
) -> DiffusionLM:
    """Load a profile, hub id or local folder as a `DiffusionLM` on `device`.

    Args:
        name: a profile name (see `PROFILES`), a hub id, or a local model folder.
        device: "cuda", "cpu", "cuda:1" or None for CUDA when available.
        dtype: None picks bf16 on CUDA and float32 on CPU.
    """
    from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    # hexlab logs the load itself; the per-tensor progress bar only clutters the terminal
    transformers_logging.disable_progress_bar()

    profile = resolve_profile(name)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    source = profile.source
    if Path(source).is_dir() and not any(
        (Path(source) / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")
    ):
        raise FileNotFoundError(
            f"model folder {source} has no tokenizer (tokenizer.json or tokenizer_config.json); "
            f"save the tokenizer beside the weights with tokenizer.save_pretrained()"
        )
    logger.info("loading %s from %s on %s in %s", profile.name, source, torch_device, torch_dtype)
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=profile.trust_remote_code)
    # LLaDA and Dream ship their own modeling code, loaded by AutoModel; others are masked LMs.
    auto = AutoModel if profile.family in ("llada", "dream") else AutoModelForMaskedLM
    model = auto.from_pretrained(
        source, trust_remote_code=profile.trust_remote_code, dtype=torch_dtype
    )
    return DiffusionLM(model.to(torch_device), tokenizer, profile)
