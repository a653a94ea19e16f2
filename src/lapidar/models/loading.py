"""Resolve a model name (preset, hub id, local directory) to a directory on disk, and load from it.

Everything is loaded with the ordinary `from_pretrained` code path from a real directory, so a run's adapter
records a `base_model_name_or_path` that plain transformers/peft can open. The embedded `tiny-qwen2.5` preset and
any `--init random` model are materialised once in lapidar's cache directory.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from lapidar.errors import UserError
from lapidar.io import atomic_dir, write_json
from lapidar.models.presets import PRESETS, ModelPreset, get_preset
from lapidar.models.qwen import BASE_EOS, INSTRUCT_EOS, build_tokenizer, chat_template, save_tokenizer

__all__ = ["RANDOM_LABEL", "RUN_FILE", "ModelSource", "cache_dir", "load_model", "load_tokenizer", "resolve_model"]

RANDOM_LABEL = "(RANDOMLY INITIALISED weights: answers are not a real model's)"
MARKER = "lapidar_model.json"  # written into every directory lapidar materialises
RUN_FILE = "lapidar_run.json"  # in a run directory: which base model and weights it holds


@dataclass(frozen=True)
class ModelSource:
    """A model that can be opened with `from_pretrained(path)`."""

    name: str  # what the user asked for
    path: Path
    kind: str  # "instruct" or "base"
    random_init: bool

    @property
    def label(self) -> str:
        """Human-readable name, flagged when the weights are random."""
        return f"{self.name} {RANDOM_LABEL}" if self.random_init else self.name


def cache_dir() -> Path:
    """Where lapidar keeps materialised models: $LAPIDAR_CACHE, else ~/.cache/lapidar."""
    return Path(os.environ.get("LAPIDAR_CACHE") or Path.home() / ".cache" / "lapidar")


def resolve_model(spec: str, init: str = "pretrained", seed: int = 0) -> ModelSource:
    """Turn a preset name, hub id or directory into a `ModelSource`, materialising it first when needed."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return _local_source(spec, path)
    if spec.startswith((".", "/", "~")) or (os.sep in spec and spec.count("/") > 1):
        raise UserError(f"model directory not found: {spec}; pass an existing directory or a preset name")
    preset = _find_preset(spec)
    if preset is not None and (preset.hub_id is None or init == "random"):
        return _materialise_random(preset, seed)
    if init == "random":
        raise UserError(f"--init random needs a preset name (see `lapidar models`), got {spec!r}")
    if preset is None and "/" not in spec:
        raise UserError(
            f"unknown model {spec!r}: not a preset, a hub id (org/name) or an existing directory; "
            f"valid presets: {', '.join(PRESETS)}"
        )
    hub_id = preset.hub_id if preset is not None else spec
    assert hub_id is not None
    kind = preset.kind if preset is not None else ("instruct" if "instruct" in hub_id.lower() else "base")
    return ModelSource(name=hub_id, path=_download(hub_id), kind=kind, random_init=False)


def _find_preset(spec: str) -> ModelPreset | None:
    try:
        return get_preset(spec)
    except UserError:
        return None


def _local_source(spec: str, path: Path) -> ModelSource:
    if not (path / "config.json").is_file():
        raise UserError(
            f"{path} is not a model directory: config.json is missing (expected a Hugging Face model folder "
            "with config.json, *.safetensors and tokenizer files)"
        )
    marker = path / MARKER
    if marker.is_file():
        meta = json.loads(marker.read_text(encoding="utf-8"))
        return ModelSource(name=meta["name"], path=path, kind=meta["kind"], random_init=meta["random_init"])
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    eos = config.get("eos_token_id")
    eos_ids = eos if isinstance(eos, list) else [eos]
    # Qwen2.5 instruct checkpoints end turns with <|im_end|> (151645); base checkpoints with <|endoftext|>.
    kind = "instruct" if 151645 in eos_ids or "instruct" in path.name.lower() else "base"
    return ModelSource(name=spec, path=path, kind=kind, random_init=False)


def _hub_reachable(timeout: float = 3.0) -> bool:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = urlparse(endpoint).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _download(hub_id: str) -> Path:
    """Find `hub_id` in the Hugging Face cache, or download it; fail fast and clearly when offline."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    patterns = ["*.json", "*.safetensors", "*.txt", "*.jinja", "*.model", "*.tiktoken"]
    try:
        return Path(snapshot_download(hub_id, allow_patterns=patterns, local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    how = (
        f"download it on a machine with access (`hf download {hub_id} --local-dir DIR`), copy DIR here and pass "
        "--model DIR; or use the embedded offline preset `tiny-qwen2.5`"
    )
    if os.environ.get("HF_HUB_OFFLINE") == "1" or not _hub_reachable():
        raise UserError(f"cannot reach the Hugging Face hub to fetch {hub_id} and it is not in the local cache; {how}")
    try:
        return Path(snapshot_download(hub_id, allow_patterns=patterns))
    except (HfHubHTTPError, OSError) as e:
        raise UserError(f"could not download {hub_id}: {e}; {how}") from None


def _materialise_random(preset: ModelPreset, seed: int) -> ModelSource:
    """Build `preset` with random weights (deterministic for `seed`) and save it once in the cache."""
    tag = "" if preset.hub_id is None else "-random"
    path = cache_dir() / "models" / f"{preset.name}{tag}-seed{seed}"
    if not (path / MARKER).is_file():
        import torch
        from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

        config = Qwen2Config(**{k: v for k, v in preset.config_dict().items() if k != "model_type"})
        if preset.n_params > 4e9:
            raise UserError(
                f"--init random would write {preset.n_params / 1e9:.0f}B random parameters to disk; use a "
                "preset up to 3B for random-weight runs"
            )
        with atomic_dir(path) as tmp:
            generator_state = torch.random.get_rng_state()
            torch.manual_seed(seed)
            dtype = torch.float32 if preset.n_params < 1e9 else torch.bfloat16
            model = Qwen2ForCausalLM(config).to(dtype=dtype)  # type: ignore[call-arg]
            torch.random.set_rng_state(generator_state)
            model.save_pretrained(str(tmp))
            eos = INSTRUCT_EOS if preset.kind == "instruct" else BASE_EOS
            tokenizer = build_tokenizer(preset.kind)
            save_tokenizer(tokenizer, tmp)
            GenerationConfig(
                eos_token_id=tokenizer.convert_tokens_to_ids(eos),
                pad_token_id=tokenizer.pad_token_id,
                do_sample=False,
            ).save_pretrained(str(tmp))
            write_json(
                tmp / MARKER,
                {
                    "name": preset.name,
                    "kind": preset.kind,
                    "random_init": True,
                    "seed": seed,
                    "note": "weights are RANDOM (not trained); tokenizer is the real Qwen2.5 tokenizer",
                },
            )
    return ModelSource(name=preset.name, path=path, kind=preset.kind, random_init=True)


def load_tokenizer(source: ModelSource):
    """Load the tokenizer with the chat template lapidar trains with (plain template for base models)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(source.path))
    if source.kind == "base":
        tok.chat_template = chat_template("base")
        tok.eos_token = BASE_EOS
    elif not tok.chat_template:
        tok.chat_template = chat_template("instruct")
    if tok.pad_token is None:
        tok.pad_token = BASE_EOS
    return tok


def load_model(source: ModelSource, dtype=None, quantization_config=None):
    """Load the causal LM from its directory (SDPA attention, weights in `dtype` or as saved, optionally
    quantised with a `BitsAndBytesConfig`)."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict = {}
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
        if torch.cuda.is_available():
            kwargs["device_map"] = {"": 0}  # bitsandbytes quantises while placing weights on the GPU
    return AutoModelForCausalLM.from_pretrained(
        str(source.path), dtype=dtype or "auto", attn_implementation="sdpa", **kwargs
    )
