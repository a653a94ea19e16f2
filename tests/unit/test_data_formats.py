"""Format detection and conversion into lapidar's internal form."""

from __future__ import annotations

import json

import pytest

from lapidar.data.formats import load_dataset, load_examples, parse_columns
from lapidar.errors import UserError
from tests.conftest import FIXTURES, write_jsonl

DATA = FIXTURES / "data"

U, A = "user", "assistant"


def msg(role, content):
    return {"role": role, "content": content}


@pytest.mark.parametrize(
    ("row", "fmt", "kind"),
    [
        ({"messages": [msg(U, "q"), msg(A, "a")]}, "messages", "sft"),
        ({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}, "sharegpt", "sft"),
        ({"instruction": "q", "input": "ctx", "output": "a"}, "alpaca", "sft"),  # not input-output
        ({"prompt": "q", "completion": "a"}, "prompt-completion", "sft"),
        ({"question": "q", "answer": "a"}, "question-answer", "sft"),
        ({"input": "q", "output": "a"}, "input-output", "sft"),
        ({"text": "raw"}, "text", "text"),
        ({"prompt": "q", "completion": "a", "text": "q a"}, "prompt-completion", "sft"),  # text only decides alone
        ({"prompt": "q", "chosen": "a", "rejected": "b"}, "preference", "preference"),
        (
            {"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "gpt", "value": "a"}}
            | {"rejected": {"from": "gpt", "value": "b"}},
            "sharegpt-preference",
            "preference",
        ),
        ({"prompt": "q", "completion": "a", "label": True}, "feedback", "feedback"),
        (
            {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "kto_tag": False},
            "sharegpt-feedback",
            "feedback",
        ),
    ],
)
def test_detection(tmp_path, row, fmt, kind):
    ds = load_dataset(write_jsonl(tmp_path / "x.jsonl", [row, row]))
    assert (ds.fmt, ds.kind) == (fmt, kind)
    assert ds.reason.startswith("every row has the fields ")


def test_alpaca_with_system_and_history(tmp_path):
    rows = [{"instruction": "Q2", "input": "ctx", "output": "A2", "system": "S", "history": [["Q1", "A1"]]}]
    ex = load_dataset(write_jsonl(tmp_path / "x.jsonl", rows)).examples[0]
    assert ex.messages == [msg("system", "S"), msg(U, "Q1"), msg(A, "A1"), msg(U, "Q2\n\nctx"), msg(A, "A2")]


def test_sharegpt_tools_function_calls_and_observations():
    ds = load_dataset(DATA / "sharegpt.json")
    first = ds.examples[0]
    assert [m["role"] for m in first.messages] == ["system", U, A, "tool", A]
    assert first.messages[2]["content"] == (
        '<tool_call>\n{"name": "lookup_policy", "arguments": {"number": "HM-1002"}}\n</tool_call>'
    )
    assert first.tools and first.tools[0]["function"]["name"] == "lookup_policy"  # wrapped as OpenAI writes it
    assert first.source.endswith("sharegpt.json: row 1") and first.ref == "row 1"


def test_openai_tool_calls_and_content_parts(tmp_path):
    row = {
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}]},
            msg(U, "Weather?"),
            {
                "role": A,
                "content": None,
                "tool_calls": [{"function": {"name": "wx", "arguments": '{"city": "Porto"}'}}],
            },
            {"role": "tool", "content": "sunny"},
            msg(A, "Sunny."),
        ]
    }
    ex = load_dataset(write_jsonl(tmp_path / "x.jsonl", [row])).examples[0]
    assert ex.messages[0] == msg("system", "Be brief.")
    assert ex.messages[2]["content"] == '<tool_call>\n{"name": "wx", "arguments": {"city": "Porto"}}\n</tool_call>'


def test_image_parts_are_refused_with_the_field(tmp_path):
    row = {"messages": [{"role": U, "content": [{"type": "image_url", "image_url": "x"}]}, msg(A, "a")]}
    with pytest.raises(UserError, match=r"line 1: field 'messages\[0\].content\[0\]': only text parts.*'image_url'"):
        load_dataset(write_jsonl(tmp_path / "x.jsonl", [row]))


def test_preference_variants():
    ds = load_dataset(DATA / "preference.jsonl")
    plain, listed, implicit, _ = ds.examples
    assert plain.messages == [msg(U, "Is flood damage covered?")]
    assert plain.chosen == [msg(A, "No. Flood damage is excluded (§5.2).")]
    assert listed.messages[0] == msg("system", "Answer briefly.")
    # TRL's implicit prompt: the shared first turns become the prompt
    assert implicit.messages == [msg(U, "How long is the grace period?")]
    assert implicit.chosen == [msg(A, "15 days (§1.2).")] and implicit.rejected == [msg(A, "There is none.")]


def test_feedback_labels():
    ds = load_dataset(DATA / "feedback.jsonl")
    assert [e.label for e in ds.examples] == [True, False, True, False, True]
    assert ds.examples[0].completion == [msg(A, "No. Flood damage is excluded (§5.2).")]


def test_unknown_feedback_label_names_row_and_choices(tmp_path):
    rows = [{"prompt": "q", "completion": "a", "label": "meh"}]
    with pytest.raises(UserError, match=r"line 1: field 'label': 'meh' is not a feedback label; use true/false"):
        load_dataset(write_jsonl(tmp_path / "x.jsonl", rows))


def test_mixed_file_lists_candidates():
    with pytest.raises(UserError) as e:
        load_dataset(DATA / "mixed.jsonl")
    assert "mixed formats — 2 rows look like alpaca (first: line 1, line 2); 1 row looks like sharegpt" in str(e.value)
    assert "--format" in str(e.value)


def test_ambiguous_row_lists_candidates(tmp_path):
    rows = [{"messages": [msg(U, "q"), msg(A, "a")], "conversations": []}]
    with pytest.raises(UserError, match=r"line 1: the fields .* fit several formats — messages .*; sharegpt "):
        load_dataset(write_jsonl(tmp_path / "x.jsonl", rows))


def test_unknown_fields_suggest_column_mapping(tmp_path):
    rows = [{"instruction": "q", "output": "a"}] * 3 + [{"instrution": "q", "output": "a"}]
    with pytest.raises(UserError) as e:
        load_dataset(write_jsonl(tmp_path / "x.jsonl", rows))
    message = str(e.value)
    assert "line 4: cannot tell the format from fields ['instrution', 'output']" in message
    assert "the other rows are alpaca" in message and "--columns prompt=COLUMN" in message


def test_column_mapping_on_csv():
    ds = load_dataset(DATA / "multiline.csv", columns=parse_columns("prompt=pergunta,completion=resposta"))
    assert ds.fmt == "prompt-completion" and "after --columns prompt=pergunta,completion=resposta" in ds.reason
    assert ds.examples[0].messages[1]["content"].startswith("Você precisa de:\n- boletim")


def test_column_mapping_errors():
    with pytest.raises(UserError, match=r"unknown --columns field 'answr'; valid choices: .*completion"):
        parse_columns("answr=x")
    with pytest.raises(UserError, match=r"'prompt' is not FIELD=COLUMN"):
        parse_columns("prompt")
    with pytest.raises(UserError, match=r"row 2: no column 'pregunta' \(mapped to prompt by --columns\)"):
        load_dataset(DATA / "multiline.csv", columns={"prompt": "pregunta", "completion": "resposta"})


def test_forced_format_reports_missing_field(tmp_path):
    with pytest.raises(UserError, match=r"line 1: missing field 'prompt' \(the file is in prompt-completion format"):
        load_dataset(write_jsonl(tmp_path / "x.jsonl", [{"question": "q", "answer": "a"}]), fmt="prompt-completion")
    with pytest.raises(
        UserError, match=r"unknown data format 'chatml'; valid choices: alpaca, alpaca-feedback, feedback"
    ):
        load_dataset(write_jsonl(tmp_path / "x.jsonl", [{"question": "q", "answer": "a"}]), fmt="chatml")


def test_load_examples_keeps_the_sft_contract():
    examples, fmt = load_examples(DATA / "sharegpt.json")
    assert fmt == "sharegpt" and len(examples) == 2
    assert examples[1].messages[-1] == msg(
        A, "No. Equipment installed in the car is covered by AutoGuard comprehensive instead (§4.4)."
    )


@pytest.mark.parametrize(
    ("name", "words"),
    [("preference.jsonl", "preference rows"), ("feedback.jsonl", "feedback rows"), ("notes.md", "raw text")],
)
def test_sft_callers_get_a_clear_error_for_other_kinds(name, words):
    with pytest.raises(UserError) as e:
        load_examples(DATA / name)
    assert words in str(e.value) and "supervised fine-tuning (`lapidar train`) needs chat rows" in str(e.value)
    examples, _ = load_examples(DATA / name, kinds=("preference", "feedback", "text"))
    assert examples


def test_load_examples_refuses_empty_answers_row_by_row():
    with pytest.raises(UserError, match=r"line 4: every assistant answer is empty"):
        load_examples(DATA / "messy_alpaca.jsonl")


def test_numbers_and_json_cells_are_accepted(tmp_path):
    path = tmp_path / "x.csv"
    history = json.dumps([["Q1", "A1"]]).replace('"', '""')
    path.write_text(f'instruction,output,history\nQ2,5,"{history}"\n', encoding="utf-8")
    ex = load_dataset(path).examples[0]
    assert [m["content"] for m in ex.messages] == ["Q1", "A1", "Q2", "5"]


def test_unused_fields_are_named_and_can_be_mapped(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"text": "great service", "label": "positive", "id": 1}])
    ds = load_dataset(path)
    assert ds.fmt == "text" and ds.reason.endswith("not used: id, label (map them with --columns if they matter)")
    mapped = load_dataset(path, columns=parse_columns("prompt=text,completion=label"))
    assert mapped.fmt == "prompt-completion"
    assert mapped.examples[0].messages == [msg(U, "great service"), msg(A, "positive")]
