"""Qwen2.5 tool-call output -> OpenAI tool_calls; the tool_call_match metric; tools in prompts."""

from __future__ import annotations

import json

import pytest

from lapidar.errors import UserError
from lapidar.evaluation.metrics import Answer, default_metrics, resolve_metrics, score, task_shape
from lapidar.inference.tools import ParsedAnswer, ToolCall, ToolCallStream, load_tools, parse_tool_calls
from tests.conftest import CLAIM_TOOLS

CALL = '<tool_call>\n{"name": "get_claim_status", "arguments": {"claim_id": "HM-1042"}}\n</tool_call>'
WEATHER = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Porto", "unit": "c"}}\n</tool_call>'
TOOLS = CLAIM_TOOLS


def test_single_call():
    parsed = parse_tool_calls(CALL)
    assert parsed.content is None
    assert parsed.calls == [ToolCall("get_claim_status", {"claim_id": "HM-1042"})]
    entry = parsed.calls[0].openai("call_1")
    assert entry["type"] == "function" and entry["function"]["name"] == "get_claim_status"
    assert json.loads(entry["function"]["arguments"]) == {"claim_id": "HM-1042"}


def test_parallel_calls_keep_their_order():
    parsed = parse_tool_calls(CALL + "\n" + WEATHER)
    assert [c.name for c in parsed.calls] == ["get_claim_status", "get_weather"]
    assert parsed.calls[1].arguments == {"city": "Porto", "unit": "c"}
    assert parsed.content is None  # the newline between blocks is not content


def test_text_around_the_calls_is_content():
    parsed = parse_tool_calls("Let me look that up.\n" + CALL + "\nOne moment.")
    assert parsed.content == "Let me look that up.\n\nOne moment."
    assert len(parsed.calls) == 1


def test_malformed_json_stays_as_text():
    bad = '<tool_call>\n{"name": "get_claim_status", "arguments": {"claim_id": \n</tool_call>'
    parsed = parse_tool_calls("Sure. " + bad)
    assert parsed.calls == []
    assert parsed.content == "Sure. " + bad
    no_name = '<tool_call>\n{"arguments": {}}\n</tool_call>'
    assert parse_tool_calls(no_name) == ParsedAnswer(no_name, [])


def test_unclosed_block():
    # A complete call the model ended without </tool_call> is still a call; one cut mid-JSON is text.
    assert parse_tool_calls(CALL.removesuffix("</tool_call>")).calls[0].name == "get_claim_status"
    cut = '<tool_call>\n{"name": "get_claim_status", "argu'
    parsed = parse_tool_calls(cut)
    assert parsed.calls == [] and parsed.content == cut


def test_plain_answer_is_untouched():
    assert parse_tool_calls("Flood is not covered (§3.2).").content == "Flood is not covered (§3.2)."
    assert parse_tool_calls("a < b and <tool_ is not a tag").content == "a < b and <tool_ is not a tag"


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_streaming_in_any_pieces_gives_the_whole_text_parse(size):
    text = "Checking.\n" + CALL + "\n" + WEATHER + "\nDone <tool_ x"
    stream = ToolCallStream()
    events = []
    for i in range(0, len(text), size):
        events += stream.feed(text[i : i + size])
    events += stream.close()
    whole = parse_tool_calls(text)
    assert "".join(e for e in events if isinstance(e, str)) == whole.content
    assert [e for e in events if isinstance(e, ToolCall)] == whole.calls
    assert len(whole.calls) == 2


def test_streaming_sends_text_before_a_call_without_waiting():
    stream = ToolCallStream()
    assert stream.feed("Let me check") == ["Let me check"]
    assert stream.feed(" <tool") == []  # may be a tag: held
    assert stream.feed('_call>\n{"name": "f", "arguments": {}}') == []
    assert stream.feed("\n</tool_call>") == [ToolCall("f", {})]


def _answer(pred: str, ref: str) -> Answer:
    return Answer(pred, ref)


def test_tool_call_match_ignores_key_order_and_call_order():
    (metric,) = resolve_metrics(["tool_call_match"], [])
    ref = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Porto", "unit": "c"}}\n</tool_call>'
    swapped = '<tool_call>\n{"arguments": {"unit": "c", "city": "Porto"}, "name": "get_weather"}\n</tool_call>'
    assert metric.row(_answer(swapped, ref)) == 1.0
    assert metric.row(_answer(WEATHER + CALL, CALL + "\n" + WEATHER)) == 1.0
    wrong_arg = ref.replace("Porto", "Lisbon")
    assert metric.row(_answer(wrong_arg, ref)) == 0.0
    assert metric.row(_answer("It is sunny in Porto.", ref)) == 0.0
    assert metric.row(_answer(CALL, CALL + WEATHER)) == 0.0  # a missing parallel call is a miss


def test_tool_answers_get_tool_metrics_by_default():
    refs = [CALL, "Flood is not covered (§3.2).", WEATHER]
    assert task_shape(refs) == "tool_call"
    assert default_metrics(refs)[0] == "tool_call_match"
    metrics = resolve_metrics(None, refs)
    answers = [_answer(CALL, CALL), _answer("Flood is not covered (§3.2).", refs[1]), _answer(CALL, WEATHER)]
    totals, rows = score(answers, metrics)
    assert [r["tool_call_match"] for r in rows] == [1.0, 1.0, 0.0]  # a text answer where text was expected counts
    assert [r["tool_name_match"] for r in rows] == [1.0, 1.0, 0.0]
    assert totals["tool_call_match"] == pytest.approx(2 / 3)
    assert task_shape(["Flood is not covered.", "Yes (§1.1)."]) != "tool_call"


def test_tool_call_tokens_survive_decoding(tokenizer):
    # <tool_call> is an ordinary added token: decoding an answer keeps it, so the parser sees the blocks.
    ids = tokenizer(CALL, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == CALL


def test_load_tools(tmp_path):
    good = tmp_path / "tools.json"
    good.write_text(json.dumps(TOOLS), encoding="utf-8")
    assert load_tools(good) == TOOLS
    bare = tmp_path / "bare.json"  # LLaMA-Factory's form: the function spec alone
    bare.write_text(json.dumps(TOOLS[0]["function"]), encoding="utf-8")
    assert load_tools(bare) == TOOLS
    bad = tmp_path / "bad.json"
    bad.write_text('[{"type": "function", "function": {"description": "no name"}}]', encoding="utf-8")
    with pytest.raises(UserError, match=r"bad\.json: field 'tools\[0\]': expected a function spec"):
        load_tools(bad)
    broken = tmp_path / "broken.json"
    broken.write_text('[{"type": ', encoding="utf-8")
    with pytest.raises(UserError, match=r"broken\.json: line 1: not valid JSON"):
        load_tools(broken)
    with pytest.raises(UserError, match="file not found"):
        load_tools(tmp_path / "missing.json")
