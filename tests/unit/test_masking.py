"""Label masking: loss only on the assistant's answers and the EOS after each of them."""

from __future__ import annotations

from lapidar.data.tokenize import IGNORE, collate, encode_conversation
from lapidar.models.loading import load_tokenizer
from lapidar.models.qwen import build_tokenizer


def trained_text(tokenizer, enc):
    return tokenizer.decode([t for t, lab in zip(enc.input_ids, enc.labels, strict=True) if lab != IGNORE])


def test_only_answer_and_eos_are_trained(tokenizer):
    msgs = [
        {"role": "system", "content": "Sys"},
        {"role": "user", "content": "What is the deductible?"},
        {"role": "assistant", "content": "It is $500 (§4.2)."},
    ]
    enc = encode_conversation(tokenizer, msgs, max_length=512)
    assert trained_text(tokenizer, enc) == "It is $500 (§4.2).<|im_end|>"
    # the trailing newline after <|im_end|> and every prompt token are masked
    assert enc.labels[-1] == IGNORE and enc.input_ids[-1] == 198
    first_trained = next(i for i, lab in enumerate(enc.labels) if lab != IGNORE)
    assert tokenizer.decode(enc.input_ids[:first_trained]).endswith("<|im_start|>assistant\n")


def test_multi_turn_trains_every_answer(tokenizer):
    msgs = [
        {"role": "user", "content": "A?"},
        {"role": "assistant", "content": "One."},
        {"role": "user", "content": "B?"},
        {"role": "assistant", "content": "Two."},
    ]
    enc = encode_conversation(tokenizer, msgs, max_length=512)
    assert trained_text(tokenizer, enc) == "One.<|im_end|>Two.<|im_end|>"


def test_truncation_keeps_lengths_and_flags(tokenizer):
    msgs = [{"role": "user", "content": "word " * 50}, {"role": "assistant", "content": "ok " * 50}]
    enc = encode_conversation(tokenizer, msgs, max_length=64)
    assert enc.truncated and len(enc.input_ids) == len(enc.labels) == 64


def test_base_template_masks_question(tiny_source):
    from dataclasses import replace

    tok = load_tokenizer(replace(tiny_source, kind="base"))
    enc = encode_conversation(tok, [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}], 64)
    assert trained_text(tok, enc) == "A.<|endoftext|>"
    assert tok.decode(enc.input_ids).startswith("### Question:\nQ?")
    assert build_tokenizer("base").eos_token_id == 151643


def test_collate_pads_right_and_masks(tokenizer):
    a = encode_conversation(tokenizer, [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}], 64)
    b = encode_conversation(
        tokenizer, [{"role": "user", "content": "longer question"}, {"role": "assistant", "content": "z z z"}], 64
    )
    batch = collate([a, b], pad_id=151643)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    n = len(a.input_ids)
    assert batch["attention_mask"][0, n:].sum() == 0 and (batch["labels"][0, n:] == IGNORE).all()
    assert (batch["input_ids"][0, n:] == 151643).all()


def test_weight_0_answer_is_context_and_weight_1_user_turn_is_trained(tokenizer):
    # OpenAI / Axolotl per-message weights, as lapidar.data.formats stores them (only where not the default).
    msgs = [
        {"role": "user", "content": "A?"},
        {"role": "assistant", "content": "One.", "weight": 0},
        {"role": "user", "content": "B?", "weight": 1},
        {"role": "assistant", "content": "Two."},
    ]
    enc = encode_conversation(tokenizer, msgs, max_length=512)
    assert trained_text(tokenizer, enc) == "B?<|im_end|>Two.<|im_end|>"
    # the weight never reaches the template: the text is the one the plain messages render to
    plain = [{"role": m["role"], "content": m["content"]} for m in msgs]
    assert tokenizer.decode(enc.input_ids) == tokenizer.apply_chat_template(plain, tokenize=False)


def test_every_answer_at_weight_0_leaves_no_label(tokenizer):
    msgs = [{"role": "user", "content": "A?"}, {"role": "assistant", "content": "One.", "weight": 0}]
    assert encode_conversation(tokenizer, msgs, max_length=512).n_answer_tokens == 0


def test_train_from_keeps_a_prompts_answers_as_context(tokenizer):
    msgs = [
        {"role": "user", "content": "A?"},
        {"role": "assistant", "content": "One."},
        {"role": "user", "content": "B?"},
        {"role": "assistant", "content": "Two."},
    ]
    enc = encode_conversation(tokenizer, msgs, max_length=512, train_from=2)
    assert trained_text(tokenizer, enc) == "Two.<|im_end|>"


def test_a_trained_tool_result_followed_by_another_is_found(tokenizer):
    # The template closes a tool turn only after the last of consecutive tool results: a rendered prefix ending in
    # the first one is not a prefix of the whole text, and the trained span must still be found.
    msgs = [
        {"role": "user", "content": "Weather in Oslo and Rome?"},
        {"role": "assistant", "content": "<tool_call>\n{}\n</tool_call>", "weight": 0},
        {"role": "tool", "content": "Oslo: 3 C", "weight": 1},
        {"role": "tool", "content": "Rome: 20 C"},
        {"role": "assistant", "content": "3 and 20."},
    ]
    enc = encode_conversation(tokenizer, msgs, max_length=512)
    assert trained_text(tokenizer, enc) == "Oslo: 3 C3 and 20.<|im_end|>"
