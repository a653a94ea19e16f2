"""Checks and safe fixes on one piece of text: encoding damage, control characters, markup, personal data,
chat-template control tokens, language, and answers that stop mid-sentence.

Pure functions with no model or tokenizer, shared by the quality report (`quality.py`) and the cleaner (`clean.py`).
"""

from __future__ import annotations

import collections
import itertools
import re
import unicodedata
from dataclasses import dataclass

import ftfy

from lapidar.models.qwen import CONTROL_TOKENS

__all__ = [
    "CHAT_CONTROL_TOKENS",
    "PiiMatch",
    "control_chars",
    "control_tokens",
    "ends_mid_sentence",
    "ends_with_punctuation",
    "find_pii",
    "fix_unicode",
    "guess_language",
    "has_mojibake",
    "html_remnants",
    "looks_refused",
    "mask_pii",
    "normalise_whitespace",
    "strip_control_tokens",
]

# ---------------------------------------------------------------- chat-template control tokens

# The tokenizer turns these strings into the real control tokens, so a row containing "<|im_end|>" ends its turn
# early or opens a fake one. `<tool_call>` tags are left out: they are ordinary text in tool-calling data.
CHAT_CONTROL_TOKENS = tuple(t for t in CONTROL_TOKENS if not t.endswith("tool_call>"))
_CONTROL_TOKEN_RE = re.compile("|".join(re.escape(t) for t in CHAT_CONTROL_TOKENS))


_CONTROL_TOKEN_STARTS = tuple(sorted({t[:2] for t in CHAT_CONTROL_TOKENS}))  # ("<|",): one substring test first


def control_tokens(text: str) -> list[str]:
    """The chat-template control tokens that occur in `text`."""
    if not any(start in text for start in _CONTROL_TOKEN_STARTS):  # most texts: no regex scan at all
        return []
    return _CONTROL_TOKEN_RE.findall(text)


def strip_control_tokens(text: str) -> str:
    """Remove chat-template control tokens."""
    return _CONTROL_TOKEN_RE.sub("", text)


# ---------------------------------------------------------------- encoding damage, control characters, markup

# ftfy repairs mojibake ("cafÃ©" -> "café") and drops terminal escapes and control characters; everything that
# changes meaning or style (curly quotes, ligatures, full-width letters, HTML entities) is left as it is.
_FTFY = ftfy.TextFixerConfig(
    unescape_html=False,
    uncurl_quotes=False,
    fix_latin_ligatures=False,
    fix_character_width=False,
    fix_line_breaks=False,  # line endings are the whitespace fix's business
    normalization="NFC",
    explain=False,
)


def has_mojibake(text: str) -> bool:
    """True when the text holds UTF-8 decoded as the wrong encoding (e.g. "cafÃ©") that ftfy can repair."""
    return not text.isascii() and ftfy.fix_encoding(text) != text  # ftfy returns ASCII text as it is


def fix_unicode(text: str) -> str:
    """Repair mojibake, remove control characters, zero-width spaces, bidi overrides and terminal escapes, NFC."""
    text = ftfy.fix_text(text, _FTFY)
    return "".join(_INVISIBLE_FIX.get(c, c) for c in text if c in _ALLOWED_CONTROLS or unicodedata.category(c) != "Cc")


_ALLOWED_CONTROLS = {"\n", "\t", "\r"}
_INVISIBLE = {"\u200b", "\ufeff", "\u2028", "\u2029", "\u202e", "\u202d", "\u202a", "\u202b"}
# What fix_unicode puts in their place: line/paragraph separators become newlines, the rest disappears.
_INVISIBLE_FIX = {c: "" for c in _INVISIBLE} | {"\u2028": "\n", "\u2029": "\n\n"}


# Category Cc is exactly U+0000-001F and U+007F-009F: one regex scan instead of a Python call per character.
_CONTROL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f" + "".join(sorted(_INVISIBLE)) + "]")


def control_chars(text: str) -> list[str]:
    """Control characters (other than newline/tab), zero-width spaces, BOMs and bidi overrides, as `U+XXXX`."""
    return [f"U+{ord(c):04X}" for c in _CONTROL_RE.findall(text)]


_CODE_RE = re.compile(r"```.*?(```|$)|`[^`\n]*`", re.S)
_TAG_RE = re.compile(
    r"</?(?:p|br|div|span|a|b|i|u|em|strong|ul|ol|li|h[1-6]|table|tr|td|th|tbody|thead|img|font|html|body|head|"
    r"script|style|sup|sub|hr|pre|code|blockquote|center|small|big)(?:\s[^<>]*)?/?>",
    re.I,
)
_ENTITY_RE = re.compile(
    r"&(?:nbsp|amp|lt|gt|quot|apos|mdash|ndash|hellip|rsquo|lsquo|rdquo|ldquo|copy|reg|trade|eacute|#\d{2,6}|"
    r"#x[0-9a-fA-F]{2,6});"
)


def html_remnants(text: str) -> list[str]:
    """HTML tags and entities left over from scraping (code blocks and `inline code` are ignored)."""
    if "<" not in text and "&" not in text:  # every tag starts with "<", every entity with "&"
        return []
    prose = _CODE_RE.sub(" ", text)
    return _TAG_RE.findall(prose) + _ENTITY_RE.findall(prose)


_SPACE_RUN_END = re.compile(r"[ \t]+\n")
_BLANK_LINES = re.compile(r"\n{3,}")


def normalise_whitespace(text: str) -> str:
    """Safe whitespace fixes: CRLF -> LF, no trailing spaces on lines, at most one blank line, no space at the
    ends. Runs of spaces inside a line are kept (they indent code)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0\n", "\n")
    text = _SPACE_RUN_END.sub("\n", text)
    text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()


# ---------------------------------------------------------------- personal data


@dataclass(frozen=True)
class PiiMatch:
    """One piece of personal data: its kind, where it is in the text, and a masked form safe to show."""

    kind: str  # email | phone | card | iban | id
    start: int
    end: int
    masked: str


_DIGIT_RE = re.compile(r"\d")  # the same `\d` (any Unicode digit) the patterns below use
_EMAIL_RE = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_CARD_RE = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_IBAN_RE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
# What every IBAN starts with, without the leading \b: a pattern that begins with a character class lets the regex
# engine skip ahead to candidate positions, so this test costs about half of a full IBAN scan.
_IBAN_START_RE = re.compile(r"[A-Z]{2}\d{2}")
_SSN_RE = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
_CPF_RE = re.compile(r"(?<![\d.])\d{3}\.\d{3}\.\d{3}-\d{2}(?!\d)")
_PHONE_RE = re.compile(
    r"(?<![\w+$§.,/-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,5}(?:[ .-]\d{2,5}){1,4}(?![\w-])"
)
_PHONE_PLAIN_RE = re.compile(r"(?<![\w+$§.,/-])\+\d{9,14}(?![\w-])")
_PHONE_WORD_RE = re.compile(r"(?i)(phone|tel|call|mobile|cell|whatsapp|fone|telefone|ligue|móvil|teléfono|fax)")
# North-American toll-free numbers are businesses, not people (e.g. a company's claims line).
_TOLL_FREE = re.compile(r"^1?(800|833|844|855|866|877|888)")


def _luhn(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _iban_ok(iban: str) -> bool:
    s = iban.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _mask_digits(text: str, keep: int) -> str:
    """Replace every digit but the last `keep` with '•'."""
    total = sum(c.isdigit() for c in text)
    out, seen = [], 0
    for c in text:
        if c.isdigit():
            seen += 1
            out.append(c if seen > total - keep else "•")
        else:
            out.append(c)
    return "".join(out)


def _mask_email(email: str) -> str:
    local, _, domain = email.partition("@")
    host, _, tld = domain.rpartition(".")
    return f"{local[:2]}•••@{host[:2]}•••.{tld}"


def find_pii(text: str) -> list[PiiMatch]:
    """Emails, phone numbers, payment cards (Luhn-valid), IBANs (checksum-valid), and SSN/CPF-style ids."""
    # Skip the patterns that cannot match: all but the email one need digits (an IBAN 2, an SSN 9, a card 13, a
    # phone number 9 to count), and most texts have few or none. Counting them costs one regex scan.
    n_digits = len(_DIGIT_RE.findall(text))
    if n_digits < 2 and "@" not in text:
        return []
    found: list[PiiMatch] = []
    taken: list[tuple[int, int]] = []

    def add(kind: str, m: re.Match, masked: str) -> None:
        if any(m.start() < e and s < m.end() for s, e in taken):
            return
        taken.append((m.start(), m.end()))
        found.append(PiiMatch(kind, m.start(), m.end(), masked))

    for m in _EMAIL_RE.finditer(text) if "@" in text else ():
        add("email", m, _mask_email(m.group()))
    for m in _IBAN_RE.finditer(text) if n_digits >= 2 and _IBAN_START_RE.search(text) else ():
        if _iban_ok(m.group()):
            add("iban", m, m.group()[:2] + _mask_digits(m.group()[2:], 4))
    if n_digits < 9:
        return sorted(found, key=lambda p: p.start)
    for m in _CARD_RE.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and _luhn(digits):
            add("card", m, _mask_digits(m.group(), 4))
    for m in _SSN_RE.finditer(text):
        add("id", m, _mask_digits(m.group(), 2))
    for m in _CPF_RE.finditer(text):  # the 000.000.000-00 layout is specific enough without its check digits
        add("id", m, _mask_digits(m.group(), 2))
    for regex in (_PHONE_RE, _PHONE_PLAIN_RE):
        for m in regex.finditer(text):
            digits = re.sub(r"\D", "", m.group())
            # Digit groups split only by spaces are often years or order numbers: ask for a phone word nearby.
            formatted = m.group().startswith("+") or bool(re.search(r"[().-]", m.group().strip(".")))
            formatted = formatted or bool(_PHONE_WORD_RE.search(text[max(0, m.start() - 24) : m.start()]))
            if 9 <= len(digits) <= 15 and formatted and not _TOLL_FREE.match(digits):
                add("phone", m, _mask_digits(m.group(), 2))
    return sorted(found, key=lambda p: p.start)


_PLACEHOLDER = {"email": "[EMAIL]", "phone": "[PHONE]", "card": "[CARD]", "iban": "[IBAN]", "id": "[ID]"}


def mask_pii(text: str) -> tuple[str, list[PiiMatch]]:
    """Replace personal data with placeholders ([EMAIL], [PHONE], [CARD], [IBAN], [ID]); returns (text, matches)."""
    matches = find_pii(text)
    for p in reversed(matches):
        text = text[: p.start] + _PLACEHOLDER[p.kind] + text[p.end :]
    return text, matches


# ---------------------------------------------------------------- language

# A few very frequent words that are rare in the other languages listed; a guess, good enough to spot a mixed file.
_STOPWORD_TEXT = {
    "en": "the and is are of to in that it you for with this was be not have what my your does",
    "pt": "o os não é são do da dos das em um uma para com que se por mais como meu minha você está",
    "es": "el los las es son del en un una para con que se por más como mi está usted pero muy",
    "fr": "le les est sont des du en un une pour avec que se pas plus comme mon vous dans ce qui",
    "de": "der die das und ist sind nicht ein eine für mit ich sie zu auf den dem wie mein ihr",
    "it": "il lo gli è sono del della un una per con che non più come mio sono questo nel",
    "nl": "de het een en is zijn niet voor met ik je dat op van wat mijn hoe",
}
_STOPWORDS = {lang: frozenset(words.split()) for lang, words in _STOPWORD_TEXT.items()}
# word -> the languages it is a stopword of, so each word of a text is looked up once, not once per language
_LANGUAGES_OF: dict[str, tuple[str, ...]] = {
    w: tuple(lang for lang, sw in _STOPWORDS.items() if w in sw) for w in set().union(*_STOPWORDS.values())
}
_WORD_RE = re.compile(r"[^\W\d_]+", re.U)
_ASCII_WORD_RE = re.compile("[A-Za-z]+")  # the same words in ASCII text, found faster
_NON_LATIN = re.compile("[^\x00-\u024f]")
_SCRIPTS = (
    ("CJK", "zh"),
    ("HIRAGANA", "ja"),
    ("KATAKANA", "ja"),
    ("HANGUL", "ko"),
    ("CYRILLIC", "ru"),
    ("ARABIC", "ar"),
    ("HEBREW", "he"),
    ("GREEK", "el"),
    ("DEVANAGARI", "hi"),
    ("THAI", "th"),
)


def guess_language(text: str) -> str:
    """ISO-639-1 code of the main language (a heuristic: writing system, then common words); "und" if unsure."""
    head = text[:4000]
    if _NON_LATIN.search(head) is None:  # the common case: no script to count, only "are there 3 letters?"
        if len(list(itertools.islice((c for c in head if c.isalpha()), 3))) < 3:
            return "und"
        letters = []
    else:
        letters = [c for c in head if c.isalpha()]
        if len(letters) < 3:
            return "und"
    scripts: dict[str, int] = {}
    for c in letters:
        if c <= "\u024f":  # Basic Latin to Latin Extended-B: no need to look the name up
            continue
        name = unicodedata.name(c, "")
        for prefix, code in _SCRIPTS:
            if name.startswith(prefix):
                scripts[code] = scripts.get(code, 0) + 1
                break
    if scripts:
        code, n = max(scripts.items(), key=lambda kv: kv[1])
        if n > len(letters) * 0.3:
            return "ja" if code == "zh" and ("ja" in scripts) else code
    scores = dict.fromkeys(_STOPWORDS, 0)
    if text.isascii():  # ASCII lower-casing keeps every letter a letter: lower the text, then find its words
        words = _ASCII_WORD_RE.findall(text.lower())[:500]
    else:
        # One lower() for all words: lower-casing never makes a space, so splitting at the joins gives each word's.
        words = " ".join(_WORD_RE.findall(text)[:500]).lower().split(" ")
    for word, n in collections.Counter([w for w in words if w in _LANGUAGES_OF]).items():
        for lang in _LANGUAGES_OF.get(word, ()):
            scores[lang] += n
    best = max(scores, key=lambda k: scores[k])
    runner_up = max(v for k, v in scores.items() if k != best)
    if scores[best] >= 2 and scores[best] > runner_up:
        return best
    return "und"


# ---------------------------------------------------------------- truncated answers

_END_OK = set(".!?…。！？\"'”’»)]}*`>")
_DANGLING_TEXT = "the a an and or but of to in on at for with within by from that your my our their"
_DANGLING = frozenset(_DANGLING_TEXT.split())
_LIST_LINE = re.compile(r"^\s*(?:[-*+|#>]|\d+[.)]\s)")
_SENTENCE_END = re.compile(r"[.!?。！？](?:\s|$)")


def ends_mid_sentence(answer: str, punctuated_data: bool = False) -> bool:
    """True when an answer looks cut off: prose of 8+ words that stops on a comma, colon, dash or a word like "the",
    or without final punctuation although it has other sentences — or, with `punctuated_data` (the other answers
    end with punctuation), without final punctuation at all. Lists, tables, code and short answers are not judged."""
    text = answer.rstrip()
    if len(text.split()) < 8 or text.endswith("```"):
        return False
    last_line = text.splitlines()[-1]
    if _LIST_LINE.match(last_line):
        return False
    last = text[-1]
    if last in _END_OK or unicodedata.category(last) in ("So", "Sk"):
        return False
    if last in ",;:-–—(" or text.split()[-1].lower() in _DANGLING:
        return True
    return last.isalnum() and (punctuated_data or len(_SENTENCE_END.findall(text)) >= 1)


def ends_with_punctuation(answer: str) -> bool:
    """True when the answer's last character closes a sentence (., !, ?, a closing quote or bracket, ...)."""
    text = answer.rstrip()
    return bool(text) and text[-1] in _END_OK


# ---------------------------------------------------------------- refusals

# How assistant models decline; a generated answer that opens like this teaches the fine-tuned model to refuse.
_REFUSAL_RE = re.compile(
    r"^\W*(?:i'?m sorry|i am sorry|sorry, (?:but )?i|i apologi[sz]e|i (?:can ?not|can't|am unable to|'m unable to|"
    r"won't be able to) (?:help|assist|provide|answer|comply|do that|fulfil)|as an ai(?: language model)?|"
    r"i'?m (?:just )?an ai|unfortunately,? i (?:can ?not|can't))",
    re.I,
)


def looks_refused(answer: str) -> bool:
    """True when an answer opens as a refusal ("I'm sorry, but I can't...", "As an AI language model...")."""
    return bool(_REFUSAL_RE.search(answer.strip()[:200]))
