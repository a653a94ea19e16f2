"""`--new-tokens`: parsing and validation, tokens already in the vocabulary, resizing and mean initialisation, what
each method trains (tied and untied lm_head), and reloading a run whose embedding had to grow."""

from __future__ import annotations

import json

import pytest
import torch

from lapidar.config import TrainConfig, load_config
from lapidar.errors import UserError
from lapidar.methods import apply_method
from lapidar.models.tokens import NewTokens, add_new_tokens, init_new_rows, resize_embeddings


def small_qwen(vocab: int, tied: bool, hidden: int = 16):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, tie_word_embeddings=tied,
    )  # fmt: skip
    return Qwen2ForCausalLM(config)


def test_tokens_already_in_the_vocabulary_are_reported_not_added(tiny_source):
    from lapidar.models.loading import load_tokenizer

    tok = load_tokenizer(tiny_source)  # a fresh copy: adding tokens changes it
    new = add_new_tokens(tok, ["<claim_id>", "<tool_call>", "hello"])
    hello = tok("hello", add_special_tokens=False)["input_ids"][0]
    assert new.added == [151665] and len(tok) == 151666
    assert new.existing == {"<tool_call>": 151657, "hello": hello}
    assert new.ids == [151665, 151657, hello]  # every listed token's row trains
    notes = "\n".join(new.notes())
    assert "'<tool_call>' is already in the vocabulary (id 151657); not added again" in notes
    assert "added 1 tokens (ids 151665-151665)" in notes
    # New tokens are never split and survive decoding (they are not `special`).
    ids = tok("ref<claim_id>x", add_special_tokens=False)["input_ids"]
    assert 151665 in ids and tok.decode(ids, skip_special_tokens=True) == "ref<claim_id>x"
    again = add_new_tokens(tok, ["<claim_id>"])  # reloading a run re-adds: nothing changes
    assert again.added == [] and again.ids == [151665] and len(tok) == 151666


@pytest.mark.parametrize(
    ("value", "expected"),
    [("<a>,<b>", ["<a>", "<b>"]), (" <a> , <b> ", ["<a>", "<b>"]), (["<a>", "<b>", "<a>"], ["<a>", "<b>"])],
)
def test_new_tokens_values(value, expected):
    assert TrainConfig(new_tokens=value).new_tokens == expected


def test_new_tokens_from_a_file(tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text("<claim_id>\n\n<policy,ref>\n", encoding="utf-8")
    assert load_config(None, {"new_tokens": str(path)}).new_tokens == ["<claim_id>", "<policy,ref>"]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("<a>,,<b>", "token 2 is empty"),
        ("<a>,", "token 2 is empty"),
        ("", "token 1 is empty"),
        ("<a b>", "'<a b>' contains whitespace"),
        (["<a>", "<b>\t"], "contains whitespace"),
    ],
)
def test_bad_new_tokens_name_the_flag(value, fragment):
    with pytest.raises(UserError, match="--new-tokens") as err:
        load_config(None, {"new_tokens": value})
    assert fragment in str(err.value)


def test_resize_only_beyond_the_spare_rows_and_mean_init_both_matrices():
    model = small_qwen(vocab=128, tied=False)
    assert not resize_embeddings(model, 128)  # fits: nothing changes
    assert resize_embeddings(model, 130)
    assert model.get_input_embeddings().weight.shape[0] == 192 == model.get_output_embeddings().weight.shape[0]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    init_new_rows(model, NewTokens(ids=[100, 129], added=[100, 129], n_before=100))
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        weight = dict(model.named_parameters())[name]
        assert torch.allclose(weight[[100, 129]], before[name][:100].mean(0).expand(2, -1))
        keep = torch.ones(192, dtype=torch.bool)
        keep[[100, 129]] = False
        assert torch.equal(weight[keep], before[name][keep])


@pytest.mark.parametrize("tied", [True, False])
def test_lora_trains_the_new_rows_of_each_matrix(tied):
    model = apply_method(small_qwen(128, tied), TrainConfig(method="lora", target_modules=["q_proj"]), [120, 121])
    extra = sorted(n for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n)
    assert all("token_adapter.trainable_tokens_delta" in n for n in extra)
    assert [n.split(".token_adapter")[0].rsplit(".", 1)[-1] for n in extra] == (
        ["embed_tokens"] if tied else ["lm_head", "embed_tokens"]
    )
    assert all(p.shape == (2, 16) for n, p in model.named_parameters() if n in extra)


def test_train_embeddings_trains_whole_matrices_with_lora():
    cfg = TrainConfig(method="lora", target_modules=["q_proj"], train_embeddings=True)
    model = apply_method(small_qwen(128, tied=False), cfg)
    extra = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n}
    assert sorted(n.split(".modules_to_save")[0] for n in extra) == [
        "base_model.model.lm_head",
        "base_model.model.model.embed_tokens",
    ]
    assert sum(extra.values()) == 2 * 128 * 16


def test_freeze_trains_only_the_new_rows():
    model = small_qwen(128, tied=True)
    base = model.get_input_embeddings().weight.detach().clone()
    model = apply_method(model, TrainConfig(method="freeze", freeze_trainable_layers=1), [5, 6])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    ids = torch.tensor([[1, 5, 6, 7, 9]])
    for _ in range(2):
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    weight = model.get_input_embeddings().weight.detach()
    keep = torch.ones(128, dtype=torch.bool)
    keep[[5, 6]] = False
    assert torch.equal(weight[keep], base[keep]) and not torch.equal(weight[[5, 6]], base[[5, 6]])


def test_a_run_whose_embedding_grew_reloads(tmp_path, tiny_source):
    """More new tokens than spare rows: the matrix is resized in training, and again when the run is loaded."""
    from lapidar.export.merged import merge_weights
    from lapidar.inference.generate import load_for_inference
    from lapidar.models.loading import RUN_FILE, load_tokenizer
    from lapidar.models.qwen import save_tokenizer

    base_dir, run = tmp_path / "base", tmp_path / "run"
    tok = load_tokenizer(tiny_source)
    small_qwen(len(tok), tied=False, hidden=8).save_pretrained(str(base_dir))  # no spare rows at all
    save_tokenizer(tok, base_dir)
    tokens = ["<t1>", "<t2>"]
    meta = {"base_model": str(base_dir), "model_name": "small", "kind": "instruct", "random_init": True}
    run.mkdir()
    (run / RUN_FILE).write_text(json.dumps({**meta, "method": "lora", "weights": "adapter", "new_tokens": tokens}))

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base_dir))
    new = add_new_tokens(tok, tokens)
    assert resize_embeddings(model, len(tok))
    init_new_rows(model, new)
    model = apply_method(model, TrainConfig(method="lora", target_modules=["q_proj"]), new.ids)
    with torch.no_grad():  # stand-in for training: move the new rows and the LoRA B matrices
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(str(run / "adapter"))

    loaded = load_for_inference(str(run))
    assert loaded.tokenizer.convert_tokens_to_ids(tokens) == new.ids
    ids = torch.tensor([[1, *new.ids, 7]])
    model.eval()
    with torch.no_grad():
        expected = model(input_ids=ids).logits
        assert torch.allclose(loaded.model(input_ids=ids).logits, expected, atol=1e-5)
        assert torch.allclose(merge_weights(loaded.model)(input_ids=ids).logits, expected, atol=1e-5)
