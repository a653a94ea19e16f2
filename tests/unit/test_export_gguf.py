"""GGUF writing: metadata llama.cpp needs for Qwen2, tensor names and types, tied embeddings, tokenizer tables."""

from __future__ import annotations

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf", reason="the gguf package is not installed (pip install 'lapidar[export]')")

from lapidar.export.gguf import _encode_tensor, _state_dict, gguf_token_table, llama_cpp_available, write_gguf  # noqa: E402
from lapidar.export.verify import TOKENIZER_PROBE  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model(tiny_source):
    from lapidar.models.loading import load_model

    return load_model(tiny_source).eval()


@pytest.fixture(scope="module")
def small():
    """A 2-layer Qwen2 with a 300-row embedding and a small byte-level BPE tokenizer holding Qwen's control tokens.

    Reading a GGUF file back with gguf's pure-Python reader takes ~1 min for the real 151,936-token vocabulary, so
    the file layout is checked on this small model; the real vocabulary is checked through llama.cpp below.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    from lapidar.models.qwen import CONTROL_TOKENS, N_SPECIAL, chat_template

    alphabet = list(gguf.vocab.bytes_to_unicode().values())
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he")]
    vocab = {ch: i for i, ch in enumerate(alphabet)} | {a + b: 256 + i for i, (a, b) in enumerate(merges)}
    backend = Tokenizer(models.BPE(vocab, merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_tokens([AddedToken(t, special=i < N_SPECIAL) for i, t in enumerate(CONTROL_TOKENS)])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.chat_template = chat_template("instruct")
    config = Qwen2Config(
        vocab_size=300,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
    )
    torch.manual_seed(0)
    return Qwen2ForCausalLM(config).eval(), tok


@pytest.fixture(scope="module")
def small_f16(small, tmp_path_factory):
    model, tok = small
    path = tmp_path_factory.mktemp("gguf") / "small-f16.gguf"
    write_gguf(model, tok, path, "f16", name="small", eos_token="<|im_end|>", description="RANDOM test")
    return gguf.GGUFReader(str(path))


def _field(reader, key):
    return reader.fields[key].contents()


def test_token_table_types(tokenizer):
    tokens, types = gguf_token_table(tokenizer, 151936)
    assert len(tokens) == len(types) == 151936
    T = gguf.TokenType
    assert tokens[9707] == "Hello" and types[9707] == T.NORMAL
    assert tokens[151645] == "<|im_end|>" and types[151645] == T.CONTROL
    assert tokens[151657] == "<tool_call>" and types[151657] == T.USER_DEFINED  # plain text in Qwen's tokenizer
    assert types[151659] == T.CONTROL  # <|fim_prefix|>: looks like a control marker
    assert tokens[151700] == "[PAD151700]" and types[151700] == T.UNUSED  # embedding rows beyond the vocabulary


def test_f16_file_has_qwen2_metadata_and_tied_embeddings(small, small_f16):
    model, tok = small
    reader = small_f16
    assert _field(reader, "general.architecture") == "qwen2"
    assert _field(reader, "general.description") == "RANDOM test"
    cfg = model.config
    assert _field(reader, "qwen2.block_count") == cfg.num_hidden_layers
    assert _field(reader, "qwen2.embedding_length") == cfg.hidden_size
    assert _field(reader, "qwen2.attention.head_count_kv") == cfg.num_key_value_heads
    assert _field(reader, "qwen2.rope.freq_base") == pytest.approx(1e6)
    assert _field(reader, "tokenizer.ggml.model") == "gpt2"
    assert _field(reader, "tokenizer.ggml.pre") == "qwen2"
    ids = tok.convert_tokens_to_ids
    assert _field(reader, "tokenizer.ggml.eos_token_id") == ids("<|im_end|>")
    assert _field(reader, "tokenizer.ggml.padding_token_id") == ids("<|endoftext|>")
    assert _field(reader, "tokenizer.ggml.add_bos_token") is False
    assert _field(reader, "tokenizer.chat_template") == tok.chat_template
    tokens = _field(reader, "tokenizer.ggml.tokens")
    assert len(tokens) == 300 and tokens[258] == "Ġthe" and tokens[ids("<|im_end|>")] == "<|im_end|>"
    assert tokens[299] == "[PAD299]"
    assert _field(reader, "tokenizer.ggml.merges") == ["Ġ t", "h e", "Ġt he"]

    tensors = {t.name: t for t in reader.tensors}
    assert "output.weight" not in tensors  # tied: llama.cpp reuses token_embd.weight
    assert len(tensors) == 2 + 12 * cfg.num_hidden_layers
    assert tensors["token_embd.weight"].tensor_type == gguf.GGMLQuantizationType.F16
    assert tensors["blk.0.attn_q.bias"].tensor_type == gguf.GGMLQuantizationType.F32
    assert tensors["output_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    emb = np.asarray(tensors["token_embd.weight"].data, dtype=np.float32).reshape(300, cfg.hidden_size)
    np.testing.assert_allclose(emb, model.model.embed_tokens.weight.detach().numpy(), atol=1e-3)
    q = np.asarray(tensors["blk.1.attn_q.weight"].data, dtype=np.float32)
    ref = model.model.layers[1].self_attn.q_proj.weight.detach().numpy()  # [out, in], as llama.cpp stores it
    np.testing.assert_allclose(q.reshape(ref.shape), ref, atol=1e-3)


@pytest.mark.parametrize("qtype", ["BF16", "Q8_0"])
def test_native_quantised_types_round_trip(tiny_model, qtype):
    weight = tiny_model.model.layers[1].mlp.down_proj.weight
    data, raw = _encode_tensor(weight, qtype)
    assert raw == gguf.GGMLQuantizationType[qtype]
    ref = weight.detach().numpy()
    back = gguf.quants.dequantize(data, raw).reshape(ref.shape)
    np.testing.assert_allclose(back, ref, atol=1e-2 * np.abs(ref).max())
    bias, raw = _encode_tensor(tiny_model.model.layers[1].self_attn.q_proj.bias, qtype)
    assert raw is None and bias.dtype == np.float32  # 1-D tensors stay F32, as llama.cpp expects


def test_tied_embedding_written_once_untied_both():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=151936,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    untied = Qwen2ForCausalLM(config)
    assert "lm_head.weight" in _state_dict(untied)
    config.tie_word_embeddings = True
    tied = Qwen2ForCausalLM(config)
    assert "lm_head.weight" not in _state_dict(tied) and "model.embed_tokens.weight" in _state_dict(tied)


@pytest.mark.skipif(
    not llama_cpp_available(), reason="llama-cpp-python is not installed (pip install 'lapidar[export]')"
)
def test_llama_cpp_tokenizes_like_transformers(tiny_model, tokenizer, tmp_path):
    from llama_cpp import Llama

    path = tmp_path / "tiny-f16.gguf"
    write_gguf(tiny_model, tokenizer, path, "f16", name="t", eos_token="<|im_end|>")
    llm = Llama(model_path=str(path), vocab_only=True, verbose=False)
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": TOKENIZER_PROBE}], tokenize=False, add_generation_prompt=True
    )
    for text in (TOKENIZER_PROBE, chat, "   leading spaces and 3.14159\r\n"):
        assert (
            llm.tokenize(text.encode(), add_bos=False, special=True)
            == tokenizer(text, add_special_tokens=False)["input_ids"]
        )
    assert llm.detokenize(tokenizer("naïve 你好 🤖")["input_ids"]).decode() == "naïve 你好 🤖"
    llm.close()


@pytest.mark.skipif(
    not llama_cpp_available(), reason="llama-cpp-python is not installed (pip install 'lapidar[export]')"
)
def test_q4_k_m_file_evaluates_in_llama_cpp_on_this_cpu(tiny_model, tokenizer, tmp_path):
    """llama.cpp's AMX repacking crashes on K-quant files (llama.cpp #20824); the checks' loader must not.

    Run in a child process: a segfault there fails this test instead of killing pytest.
    """
    import subprocess
    import sys

    from lapidar.export.gguf import quantize_gguf

    f32, q4 = tmp_path / "tiny-f32.gguf", tmp_path / "tiny-q4_k_m.gguf"
    write_gguf(tiny_model, tokenizer, f32, "f32", name="t", eos_token="<|im_end|>")
    quantize_gguf(f32, q4, "q4_k_m", threads=1)
    script = (
        "import sys\n"
        "from lapidar.export.verify import _llama\n"
        "from lapidar.training.hardware import cpu_has_amx\n"
        "llm = _llama(sys.argv[1], 64)\n"
        "llm.eval(list(range(1, 33)))\n"
        "assert llm.model_params.use_extra_bufts is (not cpu_has_amx())\n"
        "print('logits', len(llm.scores[31]))\n"
        "llm.close()\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(q4)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"llama.cpp died ({proc.returncode}): {proc.stderr[-2000:]}"
    assert f"logits {tiny_model.config.vocab_size}" in proc.stdout
