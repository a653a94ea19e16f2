"""Text checks and fixes: personal data, encoding damage, markup, control tokens, language, cut-off answers;
and near-duplicate detection."""

from __future__ import annotations

import pytest

from lapidar.data import scan
from lapidar.data.dedup import UnionFind, near_duplicate_pairs


def kinds(text):
    return [(p.kind, p.masked) for p in scan.find_pii(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail maria.silva@gmail.com now", [("email", "ma•••@gm•••.com")]),
        ("call +1 (415) 555-2671.", [("phone", "+• (•••) •••-••71")]),
        ("phone 020 7946 0958", [("phone", "••• •••• ••58")]),
        ("card 4111 1111 1111 1111 ok", [("card", "•••• •••• •••• 1111")]),
        ("iban DE89 3704 0044 0532 0130 00", [("iban", "DE•• •••• •••• •••• ••30 00")]),
        ("ssn 123-45-6789", [("id", "•••-••-••89")]),
        ("cpf 529.982.247-25", [("id", "•••.•••.•••-25")]),
    ],
)
def test_personal_data_is_found_and_masked(text, expected):
    assert kinds(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112",  # fails the Luhn check
        "iban DE89 3704 0044 0532 0130 01",  # fails mod-97
        "Call the claims line at 1-800-555-0199.",  # toll-free: a business, not a person
        "$1,200 bike (§4.4, §4.6) on 2024-01-15",
        "order 1234 5678 9012 and years 2023 2024 2025",
    ],
)
def test_no_false_personal_data(text):
    assert kinds(text) == []


def test_mask_pii_uses_placeholders():
    text, found = scan.mask_pii("Email jo@example.org or +44 20 7946 0958.")
    assert text == "Email [EMAIL] or [PHONE]." and len(found) == 2


def test_unicode_repair_keeps_style():
    assert scan.has_mojibake("Try the cafÃ©") and not scan.has_mojibake("café")
    assert scan.fix_unicode("cafÃ© “quoted” ﬁ\u200b\x00") == "café “quoted” ﬁ"


def test_control_chars_and_tokens():
    assert scan.control_chars("a\x00b\u200bc\td\n") == ["U+0000", "U+200B"]
    assert scan.control_tokens("ok<|im_end|>\n<|im_start|>user <tool_call>") == ["<|im_end|>", "<|im_start|>"]
    assert scan.strip_control_tokens("Bye.<|endoftext|>") == "Bye."


def test_html_outside_code_only():
    assert scan.html_remnants("a<br>b &nbsp; <p class='x'>") == ["<br>", "<p class='x'>", "&nbsp;"]
    assert scan.html_remnants("Use `<br>` or\n```html\n<p>hi</p>\n```") == []


def test_whitespace_keeps_indentation():
    assert scan.normalise_whitespace("  x:\r\n    y = 1   \r\n\r\n\r\n\r\nz  ") == "x:\n    y = 1\n\nz"


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("Is flood damage covered by the policy that I have?", "en"),
        ("Meu carro foi roubado. O que eu faço para abrir o sinistro?", "pt"),
        ("¿Cómo presento una reclamación por el robo de mi coche?", "es"),
        ("Der Schaden ist nicht versichert und die Frist ist vorbei.", "de"),
        ("Страховка покрывает ущерб от града?", "ru"),
        ("保険は雹の被害をカバーしますか", "ja"),
        ("ok", "und"),
        ("the_car is2the best of_the policy", "en"),  # digits and underscores split words, as in non-ASCII text
    ],
)
def test_language_guess(text, lang):
    assert scan.guess_language(text) == lang


@pytest.mark.parametrize(
    ("answer", "cut"),
    [
        ("Report it within 30 days of the loss. Late reports are accepted only if Harbor can still", True),
        ("You need the police report, the receipts, and", True),
        ("Yes. Relatives living with you are insureds, so the laptop is covered (§1.1).", False),
        ("Steps to follow:\n- call the police\n- photograph the damage\n- file the claim in the app", False),
        ("positive", False),
        ("```python\nprint('a b c d e f g h i j')\n```", False),
    ],
)
def test_ends_mid_sentence(answer, cut):
    assert scan.ends_mid_sentence(answer) is cut


def test_unpunctuated_answer_counts_as_cut_only_in_punctuated_data():
    answer = "The deductible for glass is two hundred and fifty dollars per claim"
    assert not scan.ends_mid_sentence(answer)
    assert scan.ends_mid_sentence(answer, punctuated_data=True)


def test_near_duplicates_found_with_similarity():
    texts = [
        "What is the deductible for auto glass repair on my car?",
        "How long do I have to report a theft to the police?",
        "What is the deductible for auto glass repair on my truck?",
        "WHAT is the deductible   for auto glass repair on my car?",  # same after normalising
        "Is flood damage covered by the HomeGuard policy?",
    ]
    pairs = near_duplicate_pairs(texts, 0.8)
    assert [(p.a, p.b) for p in pairs] == [(0, 2), (0, 3)]
    assert 0.8 <= pairs[0].similarity < 1 and pairs[1].similarity == 1.0
    assert near_duplicate_pairs(texts, 0.8) == pairs  # deterministic


def test_union_find_groups():
    uf = UnionFind(5)
    uf.union(3, 1)
    uf.union(4, 3)
    assert uf.groups() == [[0], [1, 3, 4], [2]] and uf.find(4) == 1
