"""Other tools' data layouts, each row written as that tool's documentation writes it, read into `Example`s.

Sources: OpenAI's fine-tuning guides (chat JSONL with `weight` on assistant messages, tools and legacy functions;
DPO rows `input` / `preferred_output` / `non_preferred_output`), TRL's dataset formats (conversational
prompt/completion, preference with an implicit prompt), Axolotl's chat_template docs (`conversations` with
role/content, `train` per message, pygmalion's role/value), LLaMA-Factory's data README (sharegpt preference), and
the content-part and reasoning layouts of current chat APIs.
"""

from __future__ import annotations

import pytest

from lapidar.data.convert import convert_examples
from lapidar.data.formats import load_dataset, load_examples
from lapidar.errors import UserError
from tests.conftest import write_jsonl

U, A, S = "user", "assistant", "system"


def msg(role, content, **extra):
    return {"role": role, "content": content, **extra}


def load(tmp_path, *rows, name="x.jsonl"):
    return load_dataset(write_jsonl(tmp_path / name, list(rows)))


# ---------------------------------------------------------------- content parts


@pytest.mark.parametrize("key", ["text", "value", "content"])
def test_content_parts_with_the_text_under_another_key(tmp_path, key):
    row = {
        "messages": [
            {"role": U, "content": [{"type": "text", key: "Is flood "}, {"type": "text", key: "covered?"}]},
            {"role": A, "content": [{"type": "text", key: "Only with the flood add-on."}]},
        ]
    }
    ex = load(tmp_path, row).examples[0]
    assert ex.messages == [msg(U, "Is flood covered?"), msg(A, "Only with the flood add-on.")]


def test_a_part_with_no_text_lists_the_keys_it_has(tmp_path):
    row = {"messages": [msg(U, "q"), {"role": A, "content": [{"type": "text", "body": "a"}]}]}
    with pytest.raises(UserError) as e:
        load(tmp_path, row)
    assert str(e.value) == (
        f"{tmp_path / 'x.jsonl'}: line 1: field 'messages[1].content[0]': a 'text' part holds its text under "
        "'text' (or 'value', 'content'); this part has the keys ['body', 'type']"
    )


def test_an_image_part_is_refused_by_its_type(tmp_path):
    row = {"messages": [{"role": U, "content": [{"type": "image_url", "image_url": {"url": "x"}}]}, msg(A, "a")]}
    with pytest.raises(UserError, match=r"field 'messages\[0\]\.content\[0\]': only text parts .* got a 'image_url'"):
        load(tmp_path, row)


def test_pygmalion_role_value_turns_are_read(tmp_path):
    # Axolotl's pygmalion layout: {"conversations": [{"role": ..., "value": ...}]}
    row = {"conversations": [{"role": "user", "value": "Hi"}, {"role": "assistant", "value": "Hello!"}]}
    assert load(tmp_path, row).examples[0].messages == [msg(U, "Hi"), msg(A, "Hello!")]


def test_a_turn_with_no_text_key_names_its_keys(tmp_path):
    row = {"messages": [{"role": U, "message": "q"}, msg(A, "a")]}
    with pytest.raises(
        UserError, match=r"field 'messages\[0\]': no text under 'content' .* keys \['message', 'role'\]"
    ):
        load(tmp_path, row)


# ---------------------------------------------------------------- reasoning


def test_a_reasoning_part_becomes_a_think_prefix_and_is_noted(tmp_path):
    row = {
        "messages": [
            msg(U, "Is a burst pipe covered?"),
            {
                "role": A,
                "content": [
                    {"type": "reasoning", "text": "Sudden water damage is in §3."},
                    {"type": "text", "text": "Yes, under §3."},
                ],
            },
        ]
    }
    ex = load(tmp_path, row).examples[0]
    assert ex.messages[1]["content"] == "<think>\nSudden water damage is in §3.\n</think>\n\nYes, under §3."
    assert any("messages[1].content" in n and "<think>" in n for n in ex.notes)


def test_anthropic_thinking_part_and_reasoning_content_key(tmp_path):
    rows = [
        {"messages": [msg(U, "q"), {"role": A, "content": [{"type": "thinking", "thinking": "t1"}, {"type": "text", "text": "a1"}]}]},
        {"messages": [msg(U, "q"), {"role": A, "content": "a2", "reasoning_content": "t2"}]},
    ]  # fmt: skip
    ds = load(tmp_path, *rows)
    assert [ex.messages[1]["content"] for ex in ds.examples] == [
        "<think>\nt1\n</think>\n\na1",
        "<think>\nt2\n</think>\n\na2",
    ]
    assert any("'messages[1].reasoning_content'" in n for n in ds.examples[1].notes)


def test_reasoning_on_a_user_turn_is_an_error(tmp_path):
    row = {"messages": [{"role": U, "content": "q", "reasoning": "hmm"}, msg(A, "a")]}
    with pytest.raises(UserError, match=r"field 'messages\[0\]\.reasoning': reasoning belongs to an assistant answer"):
        load(tmp_path, row)


# ---------------------------------------------------------------- per-message weights


def test_openai_weight_on_assistant_messages(tmp_path):
    # OpenAI's fine-tuning guide: weight 0 = the assistant message is not trained on.
    row = {
        "messages": [
            msg(S, "Marv is a factual chatbot that is also sarcastic."),
            msg(U, "What's the capital of France?"),
            msg(A, "Paris", weight=0),
            msg(U, "Can you be more sarcastic?"),
            msg(A, "Paris, as if everyone doesn't know that already.", weight=1),
        ]
    }
    ex = load(tmp_path, row).examples[0]
    assert ex.messages[2] == msg(A, "Paris", weight=0)
    assert ex.messages[4] == msg(A, "Paris, as if everyone doesn't know that already.")  # 1 is the default
    assert ex.answers() == [("assistant", "Paris, as if everyone doesn't know that already.")]


def test_axolotl_train_flags_on_conversations(tmp_path):
    # Axolotl's chat_template docs (message_field_training: train), train_detail left out.
    row = {
        "conversations": [
            {"from": "system", "value": "You are an AI assistant.", "train": False},
            {"from": "human", "value": "Hello", "train": False},
            {"from": "assistant", "value": "Hello", "train": True},
            {"from": "human", "value": "How are you?", "train": True},
            {"from": "assistant", "value": "Hi there!", "train": True},
        ]
    }
    ex = load(tmp_path, row).examples[0]
    assert [m.get("weight") for m in ex.messages] == [None, None, None, 1, None]


def test_loss_weight_key_and_train_detail(tmp_path):
    ex = load(tmp_path, {"messages": [msg(U, "q"), msg(A, "a", loss_weight=0.0), msg(U, "q2"), msg(A, "b")]})
    assert ex.examples[0].messages[1] == msg(A, "a", weight=0)
    detail = {
        "messages": [msg(U, "q"), msg(A, "a", train_detail=[{"begin_offset": 0, "end_offset": 1, "train": True}])]
    }
    with pytest.raises(UserError, match=r"field 'messages\[1\]\.train_detail': per-character training spans"):
        load(tmp_path, detail, name="d.jsonl")


def test_a_weight_that_is_not_0_or_1_names_the_field(tmp_path):
    with pytest.raises(UserError) as e:
        load(tmp_path, {"messages": [msg(U, "q"), msg(A, "a", weight=0.5)]})
    assert str(e.value) == (
        f"{tmp_path / 'x.jsonl'}: line 1: field 'messages[1].weight': expected 0 (context only, no loss) or 1 "
        "(train on this turn), got 0.5; lapidar trains a turn whole or not at all"
    )


def test_a_row_whose_answers_all_have_weight_0_has_nothing_to_learn(tmp_path):
    path = write_jsonl(tmp_path / "w.jsonl", [{"messages": [msg(U, "q"), msg(A, "a", weight=0)]}])
    with pytest.raises(UserError) as e:
        load_examples(path)
    assert str(e.value) == (
        f"{path}: line 1: every assistant answer has weight 0 (context only), so there is nothing to learn; set "
        '"weight": 1 on the answer to train on, or remove the row'
    )


def test_weights_survive_conversion_to_messages_and_sharegpt_and_alpaca_refuses_them(tmp_path):
    ds = load(tmp_path, {"messages": [msg(U, "q"), msg(A, "a", weight=0), msg(U, "q2"), msg(A, "b")]})
    for target in ("messages", "sharegpt"):
        rows = convert_examples(ds.examples, target)
        again = load(tmp_path, *rows, name=f"{target}.jsonl").examples
        assert again[0].messages == ds.examples[0].messages
    with pytest.raises(UserError, match=r"line 1: message 1 has a loss weight \(0\), which alpaca cannot hold"):
        convert_examples(ds.examples, "alpaca")


# ---------------------------------------------------------------- preference rows as whole conversations


def test_trl_implicit_prompt_preference(tmp_path):
    # TRL's dataset formats: conversational preference, implicit prompt.
    row = {
        "chosen": [msg(U, "What color is the sky?"), msg(A, "It is blue.")],
        "rejected": [msg(U, "What color is the sky?"), msg(A, "It is green.")],
    }
    ds = load(tmp_path, row)
    ex = ds.examples[0]
    assert (ds.fmt, ex.kind) == ("preference", "preference")
    assert ex.messages == [msg(U, "What color is the sky?")]
    assert (ex.chosen, ex.rejected) == ([msg(A, "It is blue.")], [msg(A, "It is green.")])


def test_chosen_messages_rejected_messages_split_at_the_first_differing_turn(tmp_path):
    shared = [msg(S, "Be brief."), msg(U, "2+2?"), msg(A, "4"), msg(U, "and 3+3?")]
    row = {"chosen_messages": [*shared, msg(A, "6")], "rejected_messages": [*shared, msg(A, "I don't know")]}
    ds = load(tmp_path, row)
    ex = ds.examples[0]
    assert (ds.fmt, ex.kind) == ("preference-messages", "preference")
    assert ex.messages == shared and ex.chosen == [msg(A, "6")] and ex.rejected == [msg(A, "I don't know")]


def test_conversations_that_first_differ_at_a_user_turn_are_refused(tmp_path):
    row = {
        "chosen_messages": [msg(U, "q1"), msg(A, "a")],
        "rejected_messages": [msg(U, "q2"), msg(A, "a")],
    }
    with pytest.raises(UserError, match=r"field 'chosen_messages\[0\]': the two conversations first differ at turn 0"):
        load(tmp_path, row)


def test_openai_dpo_rows(tmp_path):
    # OpenAI's DPO guide: input {messages, tools, parallel_tool_calls}, preferred_output, non_preferred_output.
    row = {
        "input": {
            "messages": [msg(U, "Hello, can you tell me how cold San Francisco is today?")],
            "tools": [],
            "parallel_tool_calls": True,
        },
        "preferred_output": [msg(A, "Today in San Francisco, it is not quite cold as expected.")],
        "non_preferred_output": [msg(A, "It is not particularly cold in San Francisco today.")],
    }
    ds = load(tmp_path, row)
    ex = ds.examples[0]
    assert (ds.fmt, ex.kind) == ("openai-preference", "preference")
    assert ex.messages == [msg(U, "Hello, can you tell me how cold San Francisco is today?")]
    assert ex.chosen == [msg(A, "Today in San Francisco, it is not quite cold as expected.")]
    assert ex.tools is None


def test_openai_dpo_input_must_hold_messages(tmp_path):
    row = {"input": {"prompt": "q"}, "preferred_output": "a", "non_preferred_output": "b"}
    with pytest.raises(
        UserError,
        match=r"field 'input': expected an object \{messages: \[...\], tools\?\}, got an object with the keys \['prompt'\]",
    ):
        load(tmp_path, row)


# ---------------------------------------------------------------- other chat layouts


def test_trl_conversational_prompt_completion(tmp_path):
    row = {"prompt": [msg(U, "What color is the sky?")], "completion": [msg(A, "It is blue.")]}
    ds = load(tmp_path, row)
    assert ds.fmt == "prompt-completion"
    assert ds.examples[0].messages == [msg(U, "What color is the sky?"), msg(A, "It is blue.")]


def test_openai_legacy_functions_and_function_call(tmp_path):
    row = {
        "messages": [
            msg(U, "Weather in Paris?"),
            {"role": A, "content": None, "function_call": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"role": "function", "name": "get_weather", "content": "18 C"},
            msg(A, "18 °C."),
        ],
        "functions": [{"name": "get_weather", "parameters": {"type": "object", "properties": {}}}],
    }
    ds = load(tmp_path, row)
    ex = ds.examples[0]
    assert "not used" not in ds.reason
    assert ex.tools == [{"type": "function", "function": row["functions"][0]}]
    assert (
        ex.messages[1]["content"]
        == '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    )
    assert ex.messages[2] == msg("tool", "18 C")


def test_ultrafeedback_binarized_rows_repeat_the_prompt_in_whole_conversations(tmp_path):
    # HuggingFaceH4/ultrafeedback_binarized: prompt (text), chosen/rejected (whole conversations), messages (= chosen).
    chosen = [msg(U, "Name a prime."), msg(A, "7")]
    row = {
        "prompt": "Name a prime.",
        "prompt_id": "abc",
        "chosen": chosen,
        "rejected": [msg(U, "Name a prime."), msg(A, "9")],
        "messages": chosen,
        "score_chosen": 8.0,
        "score_rejected": 2.0,
    }
    ds = load(tmp_path, row)
    ex = ds.examples[0]
    assert ds.fmt == "preference" and "not used: messages, prompt_id, score_chosen, score_rejected" in ds.reason
    assert ex.messages == [msg(U, "Name a prime.")]
    assert (ex.chosen, ex.rejected) == ([msg(A, "7")], [msg(A, "9")])
    with pytest.raises(UserError, match=r"their last question \('Name a prime.'\) is not the row's prompt \('Other'\)"):
        load(tmp_path, row | {"prompt": "Other"}, name="bad.jsonl")


def test_llama_factory_alpaca_kto_rows_are_feedback_not_sft(tmp_path):
    # LLaMA-Factory data/README, "KTO Dataset" (alpaca): the thumbs-down rows must not be trained as good answers.
    rows = [
        {"instruction": "Is hail covered?", "input": "Policy HM-1", "output": "Yes, under §2.", "kto_tag": True},
        {"instruction": "Is hail covered?", "input": "", "output": "lol no", "kto_tag": False},
    ]
    ds = load(tmp_path, *rows)
    assert (ds.fmt, ds.kind) == ("alpaca-feedback", "feedback")
    first, second = ds.examples
    assert first.messages == [msg(U, "Is hail covered?\n\nPolicy HM-1")] and first.label is True
    assert second.completion == [msg(A, "lol no")] and second.label is False


def test_feedback_rows_convert_to_alpaca_kto_and_back(tmp_path):
    ds = load(tmp_path, {"prompt": "q", "completion": "a", "label": False})
    rows = convert_examples(ds.examples, "alpaca")
    assert rows == [{"instruction": "q", "input": "", "output": "a", "kto_tag": False}]
    again = load(tmp_path, *rows, name="back.jsonl").examples[0]
    assert (again.messages, again.completion, again.label) == (
        ds.examples[0].messages,
        ds.examples[0].completion,
        False,
    )
