"""Resolve a model name (preset, hub id, local directory) to a directory on disk, and load from it.

Everything is loaded with the ordinary `from_pretrained` code path from a real directory, so a run's adapter
records a `base_model_name_or_path` that plain transformers/peft can open. The embedded `tiny-qwen2.5` preset and
any `--init random` model are materialised once in lapidar's cache directory.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import cast
from urllib.parse import urlparse

from lapidar.errors import UserError
from lapidar.io import atomic_dir, write_json
from lapidar.models.presets import PRESETS, ModelPreset, get_preset
from lapidar.models.qwen import BASE_EOS, INSTRUCT_EOS, build_tokenizer, chat_template, save_tokenizer

__all__ = [
    "RANDOM_LABEL",
    "RUN_FILE",
    "ModelSource",
    "cache_dir",
    "check_model_dir",
    "check_weights",
    "load_model",
    "load_tokenizer",
    "read_model_config",
    "resolve_model",
    "tokenizer_for",
]

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
    path = _download(hub_id)
    # A hub model of another architecture fails here. The files themselves are not checked: huggingface_hub only
    # moves complete downloads into a snapshot, and from_pretrained fetches what a partial cached snapshot lacks.
    read_model_config(path)
    return ModelSource(name=hub_id, path=path, kind=kind, random_init=False)


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
    config = read_model_config(path)
    # The weight files are checked by `load_model`, just before they load: `lapidar estimate` and the fit check of
    # `lapidar train` need only config.json and the tokenizer.
    _check_tokenizer_files(path)
    damaged = _damaged_json(path, ("generation_config.json",))
    if damaged is not None:
        # transformers ignores a damaged generation config without a word (eos ids, sampling defaults lost)
        raise UserError(
            f"{damaged[0]}: {damaged[1]}; transformers would ignore the file and generate with config.json's "
            f"defaults; {_REFETCH.format(path=path)}, or delete the file"
        )
    marker = path / MARKER
    if marker.is_file():
        meta = json.loads(marker.read_text(encoding="utf-8"))
        return ModelSource(name=meta["name"], path=path, kind=meta["kind"], random_init=meta["random_init"])
    eos = config.get("eos_token_id")
    eos_ids = eos if isinstance(eos, list) else [eos]
    # Qwen2.5 instruct checkpoints end turns with <|im_end|> (151645); base checkpoints with <|endoftext|>.
    kind = "instruct" if 151645 in eos_ids or "instruct" in path.name.lower() else "base"
    return ModelSource(name=spec, path=path, kind=kind, random_init=False)


# ---------------------------------------------------------------- checking a model directory before loading it
#
# A model directory is user input like a data file: it can be truncated by a cut-short copy, edited by hand, or
# hold another architecture. Everything below reads only config.json, the small JSON headers of the safetensors
# files and the directory listing, so a broken directory fails in milliseconds with one line, before the data is
# tokenised or any weights load.

QWEN2_ARCHITECTURE = "Qwen2ForCausalLM"
_REFETCH = "copy the directory again from its source (for a hub model: `hf download ORG/NAME --local-dir {path}`)"
_SHAPE_FIELDS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
_LAYER_TYPES = ("full_attention", "sliding_attention")


def read_model_config(path: Path) -> dict:
    """Read `path/config.json` and check that it describes a Qwen2/Qwen2.5 causal LM of a consistent shape.

    Raises a one-line `UserError` naming the file and the field for truncated JSON, another architecture, a
    missing or non-positive size, heads that do not divide the hidden size, or a `layer_types` list whose length
    is not `num_hidden_layers`.
    """
    file = path / "config.json"
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{file}: not a UTF-8 text file; {_REFETCH.format(path=path)}") from None
    except json.JSONDecodeError as e:
        raise UserError(
            f"{file}: not valid JSON ({e.msg}: line {e.lineno} column {e.colno}), the file is truncated or "
            f"damaged; {_REFETCH.format(path=path)}"
        ) from None
    if not isinstance(config, dict):
        raise UserError(f"{file}: expected a JSON object, found {type(config).__name__}; {_REFETCH.format(path=path)}")
    _check_architecture(file, config)
    _check_shape(file, config)
    return config


def _check_architecture(file: Path, config: dict) -> None:
    model_type = config.get("model_type")
    architectures = config.get("architectures") or []
    if model_type == "qwen2" and (not architectures or architectures == [QWEN2_ARCHITECTURE]):
        return
    found = f"model_type {model_type!r}" + (f", architectures {architectures}" if architectures else "")
    if model_type == "qwen2":
        # Another head on the Qwen2 body (Qwen2ForSequenceClassification...): loading it as a causal LM would give
        # it a randomly initialised lm_head without a word.
        what = f"architectures {architectures}: not a causal language model"
    else:
        what = f"{found}: another architecture"
    raise UserError(
        f"{file}: {what}; lapidar fine-tunes Qwen2/Qwen2.5 causal LMs (model_type 'qwen2', architectures "
        f"['{QWEN2_ARCHITECTURE}']); pass a Qwen2.5 model directory, a hub id such as Qwen/Qwen2.5-0.5B-Instruct, "
        "or a preset from `lapidar models`"
    )


def _check_shape(file: Path, config: dict) -> None:
    def field(name: str) -> int:
        value = config.get(name)
        if type(value) is not int or value < 1:
            shown = "missing" if name not in config else f"{value!r}"
            raise UserError(
                f"{file}: field {name!r} is {shown}, expected a positive integer (every Qwen2 config.json has it); "
                f"{_REFETCH.format(path=file.parent)}"
            )
        return value

    hidden, _, layers, heads, _ = (field(name) for name in _SHAPE_FIELDS)
    kv_heads = field("num_key_value_heads") if "num_key_value_heads" in config else heads
    if heads % kv_heads:
        raise UserError(
            f"{file}: num_attention_heads={heads} is not a multiple of num_key_value_heads={kv_heads} (grouped-query "
            "attention shares each key/value head among a whole number of query heads); fix config.json"
        )
    if config.get("head_dim") is not None:
        field("head_dim")  # an explicit head size (Qwen2's attention reads it) need not divide the hidden size
    elif hidden % heads:
        raise UserError(
            f"{file}: hidden_size={hidden} is not a multiple of num_attention_heads={heads} (each head gets "
            "hidden_size / num_attention_heads dimensions); fix config.json"
        )
    layer_types = config.get("layer_types")
    if layer_types is not None:
        if not isinstance(layer_types, list) or len(layer_types) != layers:
            if isinstance(layer_types, list):
                count = f"{len(layer_types)} {'entry' if len(layer_types) == 1 else 'entries'}"
            else:
                count = f"the value {layer_types!r}"
            raise UserError(
                f"{file}: field 'layer_types' has {count} but num_hidden_layers={layers}; expected one entry per "
                f"layer ({' or '.join(_LAYER_TYPES)}), or remove 'layer_types'"
            )
        unknown = sorted({str(t) for t in layer_types} - set(_LAYER_TYPES))
        if unknown:
            raise UserError(
                f"{file}: field 'layer_types' holds {', '.join(map(repr, unknown))}; expected "
                f"{' or '.join(map(repr, _LAYER_TYPES))} for each of the {layers} layers"
            )


def check_model_dir(path: Path, config: dict) -> None:
    """Check, without loading them, that `path` holds a tokenizer and complete weight files matching `config`.

    Safetensors files are checked through their JSON headers: every file as long as its header says, every tensor
    of a Qwen2ForCausalLM of this shape present with its shape, no tensor of a layer the config does not have.
    """
    _check_tokenizer_files(path)
    check_weights(path, config)


def check_weights(path: Path, config: dict) -> list[str]:
    """Check the weight files of `path` against `config` (see `check_model_dir`); returns the q/k/v bias tensors
    (names without `model.`) that a checkpoint of a bias-free attention does not hold."""
    tensors = _saved_tensors(path)
    # GPTQ/AWQ checkpoints store packed tensors under other names; a .bin pickle has no cheap header.
    if tensors is None or "quantization_config" in config:
        return []
    _check_tensors(path, config, tensors)
    saved = {name.removeprefix("model.") for name in tensors}
    return [n for n in _expected_tensors(config) if n.endswith("_proj.bias") and n not in saved]


def _saved_tensors(path: Path) -> dict[str, tuple[list[int], Path]] | None:
    """Name -> (shape, file) of every tensor in the safetensors weights of `path`; None for pytorch_model*.bin (a
    damaged one fails in `load_model`)."""
    files = _weight_files(path)
    if not files[0].name.endswith(".safetensors"):
        return None
    tensors: dict[str, tuple[list[int], Path]] = {}
    for file in files:
        for name, shape in _safetensors_shapes(file).items():
            tensors[name] = (shape, file)
    return tensors


def _check_tokenizer_files(path: Path) -> None:
    if (path / "tokenizer.json").is_file() or ((path / "vocab.json").is_file() and (path / "merges.txt").is_file()):
        return
    raise UserError(
        f"{path}: no tokenizer (expected tokenizer.json, or vocab.json + merges.txt, next to config.json); every "
        f"Qwen2.5 model uses the same tokenizer: `hf download Qwen/Qwen2.5-0.5B-Instruct tokenizer.json "
        f"tokenizer_config.json vocab.json merges.txt --local-dir {path}`"
    )


def _weight_files(path: Path) -> list[Path]:
    """The weight files transformers would load from `path`, in its order of preference; all of them must exist."""
    for name in (
        "model.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
        "pytorch_model.bin.index.json",
    ):
        file = path / name
        if file.is_file():
            return _shards(file) if name.endswith(".index.json") else [file]
    present = sorted(p.name for p in path.iterdir() if p.is_file())
    raise UserError(
        f"{path}: no model weights (expected model.safetensors, or model.safetensors.index.json and its shards; "
        f"found {', '.join(present) or 'no files'}); copy the weight files into the directory, or save the model "
        "there with `model.save_pretrained(DIR)`"
    )


def _shards(index: Path) -> list[Path]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        weight_map = None
    if not isinstance(weight_map, dict) or not weight_map:
        raise UserError(
            f"{index}: not a weight index (expected a JSON object with a non-empty 'weight_map'), the file is "
            f"truncated or damaged; {_REFETCH.format(path=index.parent)}"
        )
    names = sorted({str(v) for v in weight_map.values()})
    missing = [n for n in names if not (index.parent / n).is_file()]
    if missing:
        raise UserError(
            f"{index}: {len(missing)} of {len(names)} weight shards are missing ({', '.join(missing[:3])}"
            f"{', ...' if len(missing) > 3 else ''}); {_REFETCH.format(path=index.parent)}"
        )
    return [index.parent / n for n in names]


def _safetensors_shapes(file: Path) -> dict[str, list[int]]:
    """Tensor name -> shape from a safetensors header; a file shorter than its header says is truncated.

    Layout (https://github.com/huggingface/safetensors#format): 8 bytes little-endian header length N, N bytes of
    JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the data, offsets counted
    from the end of the header.
    """
    size = file.stat().st_size
    again = _REFETCH.format(path=file.parent)
    with file.open("rb") as f:
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if n < 2 or 8 + n > size:
            raise UserError(
                f"{file}: truncated or not a safetensors file ({size:,} bytes, no complete header); {again}"
            )
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            header = None
    if not isinstance(header, dict):
        raise UserError(f"{file}: damaged safetensors header (not a JSON object); {again}")
    shapes: dict[str, list[int]] = {}
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            end = max(end, int(info["data_offsets"][1]))
            shapes[name] = [int(d) for d in info["shape"]]
        except (KeyError, IndexError, TypeError, ValueError):
            raise UserError(f"{file}: damaged safetensors header (tensor {name!r}); {again}") from None
    if 8 + n + end > size:
        raise UserError(
            f"{file}: truncated: {size:,} bytes but its header describes {8 + n + end:,}, the copy or download was "
            f"cut short; {again}"
        )
    return shapes


def _expected_tensors(config: dict) -> dict[str, list[int]]:
    """Name (without the `model.` prefix) -> shape of every tensor of a Qwen2ForCausalLM with this config."""
    hidden, inter, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    heads = config["num_attention_heads"]
    kv = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or hidden // heads
    q, k = heads * head_dim, kv * head_dim
    out = {"embed_tokens.weight": [vocab, hidden], "norm.weight": [hidden]}
    if not config.get("tie_word_embeddings", False):
        out["lm_head.weight"] = [vocab, hidden]
    # transformers' Qwen2Attention: q/k/v with bias, o_proj without (modeling_qwen2.py).
    per_layer = {
        "self_attn.q_proj.weight": [q, hidden],
        "self_attn.q_proj.bias": [q],
        "self_attn.k_proj.weight": [k, hidden],
        "self_attn.k_proj.bias": [k],
        "self_attn.v_proj.weight": [k, hidden],
        "self_attn.v_proj.bias": [k],
        "self_attn.o_proj.weight": [hidden, q],
        "mlp.gate_proj.weight": [inter, hidden],
        "mlp.up_proj.weight": [inter, hidden],
        "mlp.down_proj.weight": [hidden, inter],
        "input_layernorm.weight": [hidden],
        "post_attention_layernorm.weight": [hidden],
    }
    for i in range(config["num_hidden_layers"]):
        out |= {f"layers.{i}.{name}": shape for name, shape in per_layer.items()}
    return out


def _check_tensors(path: Path, config: dict, tensors: dict[str, tuple[list[int], Path]]) -> None:
    """Compare the saved tensors with the config's shape: a missing tensor would be randomly initialised and an
    extra layer dropped by `from_pretrained`, each with only a log line; here both stop the run."""
    found = {name.removeprefix("model."): value for name, value in tensors.items()}
    expected = _expected_tensors(config)
    config_file = path / "config.json"
    for name, shape in expected.items():
        if name not in found and name.endswith("_proj.bias"):
            continue  # a checkpoint without attention biases: transformers sets them to zero, the same function
        if name not in found:
            if name == "lm_head.weight" and "embed_tokens.weight" in found:
                raise UserError(
                    f"{path}: the weights have no lm_head.weight but {config_file.name} says "
                    'tie_word_embeddings=false; set "tie_word_embeddings": true in config.json if the output '
                    "layer shares the embedding, else copy the complete weights"
                )
            raise UserError(
                f"{path}: tensor {name!r} of a {QWEN2_ARCHITECTURE} with the shape of config.json is not in the weight "
                f"files; the weights belong to another model or are incomplete: {_REFETCH.format(path=path)}"
            )
        saved, file = found[name]
        if saved != shape:
            raise UserError(
                f"{file}: tensor {name!r} has shape {saved} but config.json implies {shape} (hidden_size, "
                "intermediate_size, heads, vocab_size); the weights and config.json come from different models: "
                f"{_REFETCH.format(path=path)}"
            )
    layer_ids = {int(n.split(".")[1]) for n in found if n.startswith("layers.") and n.split(".")[1].isdigit()}
    extra = sorted(i for i in layer_ids if i >= config["num_hidden_layers"])
    if extra:
        raise UserError(
            f"{config_file}: num_hidden_layers={config['num_hidden_layers']} but the weight files hold "
            f"{max(layer_ids) + 1} layers; set num_hidden_layers to {max(layer_ids) + 1} or copy the matching config.json"
        )


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

    try:
        tok = AutoTokenizer.from_pretrained(str(source.path))
    except Exception as e:  # tokenizers raises a bare Exception for a damaged tokenizer.json, transformers others
        where, why = _damaged_json(source.path, _TOKENIZER_JSON) or (source.path, _one_line(e))
        raise UserError(
            f"{where}: the tokenizer could not be loaded ({why}); the tokenizer files are damaged or incomplete; "
            "every Qwen2.5 model uses the same tokenizer: `hf download Qwen/Qwen2.5-0.5B-Instruct tokenizer.json "
            f"tokenizer_config.json vocab.json merges.txt --local-dir {source.path}`"
        ) from None
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
    quantised with a `BitsAndBytesConfig`), after checking the weight files against config.json."""
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    absent_biases = check_weights(source.path, read_model_config(source.path))  # cheap: headers only
    kwargs: dict = {}
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
        if torch.cuda.is_available():
            kwargs["device_map"] = {"": 0}  # bitsandbytes quantises while placing weights on the GPU
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(source.path), dtype=dtype or "auto", attn_implementation="sdpa", **kwargs
        )
    except (OSError, ValueError, SafetensorError) as e:
        # What `check_model_dir` cannot see without reading the data (a damaged .bin pickle, corrupt bytes).
        raise UserError(
            f"{source.path}: the model could not be loaded ({_one_line(e)}); {_REFETCH.format(path=source.path)}"
        ) from None
    # Qwen2's attention always has q/k/v biases; a checkpoint saved without them means zero biases. transformers
    # zero-initialises absent biases on a plain load but leaves them as uninitialised memory when quantising with
    # bitsandbytes (seen with transformers 5.24: values up to 1e38, a NaN loss at the first QLoRA step).
    with torch.no_grad():
        for name in absent_biases:
            linear = cast(torch.nn.Linear, model.get_submodule(f"model.{name.removesuffix('.bias')}"))
            linear.bias.zero_()
    return model


_TOKENIZER_JSON = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json")


def _damaged_json(path: Path, names: tuple[str, ...]) -> tuple[Path, str] | None:
    """The first of `names` in `path` that is not valid JSON, and why (only read once loading has failed)."""
    for name in names:
        file = path / name
        if not file.is_file():
            continue
        try:
            json.loads(file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            return file, f"not valid JSON: {_one_line(e)}"
    return None


def _one_line(error: BaseException) -> str:
    """The first line of an exception's message, for a one-line UserError."""
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]


@functools.lru_cache(maxsize=2)
def tokenizer_for(model: str):
    """The tokenizer (and chat template) of a preset, hub id or model directory, loaded once per process."""
    return load_tokenizer(resolve_model(model))
