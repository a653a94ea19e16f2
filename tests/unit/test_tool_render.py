"""Tool calling in training data: specs rendered by Qwen2.5's own template, calls byte for byte, masking kept."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from lapidar.data.formats import load_dataset
from lapidar.data.tokenize import IGNORE, answer_spans, encode_conversation, render_prompt
from lapidar.errors import UserError
from lapidar.models.loading import load_tokenizer
from lapidar.training.objectives import encode_answer
from tests.conftest import write_jsonl

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}

# OpenAI's fine-tuning layout for function calling: tools next to messages, the call under tool_calls with its
# arguments as a JSON string, the result as a tool message.
OPENAI_ROW = {
    "messages": [
        {"role": "user", "content": "Wie ist das Wetter in München?"},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "München"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'},
        {"role": "assistant", "content": "In München sind es 21 °C."},
    ],
    "tools": [WEATHER],
    "parallel_tool_calls": False,
}


def render(tokenizer, messages, tools=None, gen=False):
    return tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=gen)


def trained_text(tokenizer, enc):
    return tokenizer.decode([t for t, lab in zip(enc.input_ids, enc.labels, strict=True) if lab != IGNORE])


def load_one(tmp_path, row):
    ds = load_dataset(write_jsonl(tmp_path / "x.jsonl", [row]))
    return ds, ds.examples[0]


def test_training_text_holds_the_tool_specs_in_the_system_turn_as_the_template_renders_them(tmp_path, tokenizer):
    ds, ex = load_one(tmp_path, OPENAI_ROW)
    assert ds.fmt == "messages" and ex.tools == [WEATHER]
    assert "not used" not in ds.reason  # parallel_tool_calls is read (it changes nothing in training)
    text, _ = answer_spans(tokenizer, ex.messages, ex.source, ex.tools)
    assert text == render(tokenizer, ex.messages, ex.tools)
    system = text[: text.index("<|im_end|>")]
    assert system.startswith("<|im_start|>system\n") and "# Tools" in system
    assert "<tools>\n" + json.dumps(WEATHER, ensure_ascii=False) + "\n</tools>" in system
    # the rendered prompt for generation (what chat/serve/eval show the model) holds the same system turn
    prompt = render_prompt(tokenizer, ex.messages[:1], ex.tools)
    assert prompt.startswith(system) and prompt.endswith("<|im_start|>assistant\n")


def test_tool_call_text_matches_the_templates_rendering_of_structured_tool_calls(tmp_path, tokenizer):
    row = {
        "messages": [
            {"role": "user", "content": "Weather in Porto and in 東京?"},
            {
                "role": "assistant",
                "content": "Checking both.",
                "tool_calls": [
                    {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Porto"}'}},
                    {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "東京"}}},
                ],
            },
        ],
        "tools": [WEATHER],
    }
    _, ex = load_one(tmp_path, row)
    structured = [
        row["messages"][0],
        {
            "role": "assistant",
            "content": "Checking both.",
            "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Porto"}}},
                {"function": {"name": "get_weather", "arguments": {"city": "東京"}}},
            ],
        },
    ]
    assert render(tokenizer, ex.messages, ex.tools) == render(tokenizer, structured, ex.tools)
    assert (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "東京"}}\n</tool_call>' in ex.messages[1]["content"]
    )


def test_tool_results_and_specs_are_context_and_the_call_is_trained(tmp_path, tokenizer):
    _, ex = load_one(tmp_path, OPENAI_ROW)
    enc = encode_conversation(tokenizer, ex.messages, 1024, ex.source, ex.tools)
    assert trained_text(tokenizer, enc) == (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "München"}}\n</tool_call><|im_end|>'
        "In München sind es 21 °C.<|im_end|>"
    )
    text = tokenizer.decode(enc.input_ids)
    assert "<|im_start|>user\n<tool_response>\n" + '{"temp_c": 21}' + "\n</tool_response><|im_end|>" in text


def test_llama_factory_sharegpt_tools_as_json_text_are_wrapped_as_openai_specs(tmp_path, tokenizer):
    # LLaMA-Factory's data/README: tools is a JSON string of bare specs; function_call / observation turns.
    bare = WEATHER["function"]
    row = {
        "conversations": [
            {"from": "human", "value": "Weather in Oslo?"},
            {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": "Oslo"}})},
            {"from": "observation", "value": '{"temp_c": 3}'},
            {"from": "gpt", "value": "3 °C in Oslo."},
        ],
        "system": "You are a weather bot.",
        "tools": json.dumps([bare]),
    }
    ds, ex = load_one(tmp_path, row)
    assert ds.fmt == "sharegpt" and ex.tools == [{"type": "function", "function": bare}]
    text, _ = answer_spans(tokenizer, ex.messages, ex.source, ex.tools)
    assert text.startswith("<|im_start|>system\nYou are a weather bot.\n\n# Tools\n")
    assert json.dumps({"type": "function", "function": bare}) in text
    assert text == render(
        tokenizer,
        [
            {"role": "system", "content": "You are a weather bot."},
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
            {"role": "tool", "content": '{"temp_c": 3}'},
            {"role": "assistant", "content": "3 °C in Oslo."},
        ],
        [{"type": "function", "function": bare}],
    )


def test_parallel_calls_in_one_function_call_turn_become_one_block_each(tmp_path):
    calls = [{"name": "get_weather", "arguments": {"city": c}} for c in ("Oslo", "Rome")]
    row = {
        "conversations": [
            {"from": "human", "value": "Oslo and Rome?"},
            {"from": "function_call", "value": json.dumps(calls)},
        ],
        "tools": json.dumps([WEATHER["function"]]),
    }
    _, ex = load_one(tmp_path, row)
    assert ex.messages[1]["content"] == "\n".join(f"<tool_call>\n{json.dumps(c)}\n</tool_call>" for c in calls)


def test_preference_prompt_carries_the_tools_and_only_the_answer_is_trained(tmp_path, tokenizer):
    row = {
        "prompt": [{"role": "user", "content": "Weather in Oslo?"}],
        "chosen": [{"role": "assistant", "content": "Let me check."}],
        "rejected": [{"role": "assistant", "content": "No idea."}],
        "tools": [WEATHER],
    }
    _, ex = load_one(tmp_path, row)
    enc = encode_answer(tokenizer, ex.messages, ex.chosen, 1024, ex.source, ex.tools)
    assert "# Tools" in tokenizer.decode(enc.input_ids)
    assert trained_text(tokenizer, enc) == "Let me check.<|im_end|>"


def test_bad_tool_specs_name_the_field_and_what_was_found(tmp_path):
    row = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    with pytest.raises(UserError, match=r"line 1: field 'tools\[0\]': expected a function spec .* keys \['desc'\]"):
        load_dataset(write_jsonl(tmp_path / "a.jsonl", [row | {"tools": [{"desc": "x"}]}]))
    with pytest.raises(UserError, match=r"line 1: field 'tools': .*not valid JSON: '\[\{broken'"):
        load_dataset(write_jsonl(tmp_path / "b.jsonl", [row | {"tools": "[{broken"}]))


def test_a_template_with_no_place_for_tools_is_an_error_not_a_silent_drop(tiny_source):
    base = load_tokenizer(replace(tiny_source, kind="base"))
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    with pytest.raises(UserError, match=r"row 1: the row carries tool specs .* `lapidar models` lists them"):
        encode_conversation(base, msgs, 64, "row 1", [WEATHER])
