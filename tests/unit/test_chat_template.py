"""Chat-template rendering: the exact Qwen2.5 ChatML text, and the plain template for base models."""

from __future__ import annotations

from lapidar.models.qwen import build_tokenizer, chat_template

DEFAULT_SYSTEM = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"


def render(tokenizer, messages, gen=False):
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)


def test_no_system_gets_qwen_default(tokenizer):
    text = render(tokenizer, [{"role": "user", "content": "Hi"}], gen=True)
    assert text == DEFAULT_SYSTEM + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_with_system(tokenizer):
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
    ]
    assert render(tokenizer, msgs) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello.<|im_end|>\n"
    )


def test_multi_turn(tokenizer):
    msgs = [
        {"role": "user", "content": "1+1?"},
        {"role": "assistant", "content": "2"},
        {"role": "user", "content": "and 2+2?"},
    ]
    assert render(tokenizer, msgs, gen=True) == (
        DEFAULT_SYSTEM + "<|im_start|>user\n1+1?<|im_end|>\n<|im_start|>assistant\n2<|im_end|>\n"
        "<|im_start|>user\nand 2+2?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_base_plain_template_is_visible_and_ends_with_endoftext():
    tok = build_tokenizer("base")
    assert tok.eos_token == "<|endoftext|>"
    msgs = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Q"},
        {"role": "assistant", "content": "A"},
    ]
    assert render(tok, msgs) == "S\n\n### Question:\nQ\n\n### Answer:\nA<|endoftext|>\n\n"
    assert render(tok, msgs[:2], gen=True) == "S\n\n### Question:\nQ\n\n### Answer:\n"
    assert "im_start" not in chat_template("base").split("#}", 1)[1]
