"""Document reading and chunking for `lapidar data synth --mode documents`."""

from __future__ import annotations

import pytest

from lapidar.data.documents import chunk_text, document_chunks, read_document
from lapidar.errors import UserError


def test_chunks_keep_paragraphs_and_respect_the_limit():
    text = "\n\n".join(f"Paragraph {i}. " + "word " * 30 for i in range(10))
    chunks = chunk_text(text, max_chars=400)
    assert all(len(c) <= 400 for c in chunks)
    assert " ".join(" ".join(c.split()) for c in chunks) == " ".join(text.split())  # nothing lost or reordered
    assert len(chunks) == 5  # two ~180-character paragraphs per chunk


def test_long_paragraph_is_cut_at_a_sentence_end():
    chunks = chunk_text("First sentence here. " * 40, max_chars=200)
    assert all(len(c) <= 200 and c.endswith(".") for c in chunks)


def test_docx_html_and_markdown_are_read(tmp_path):
    docx = pytest.importorskip("docx", reason="pip install 'lapidar[synth]'")
    doc = docx.Document()
    doc.add_paragraph("Claims are paid within 30 days.")
    doc.add_paragraph("Send the form to the office.")
    doc.save(tmp_path / "policy.docx")
    (tmp_path / "page.html").write_text("<html><body><p>Hello &amp; welcome</p><script>x()</script></body></html>")
    (tmp_path / "notes.md").write_text("# Title\n\nBody text.")
    assert read_document(tmp_path / "policy.docx") == "Claims are paid within 30 days.\n\nSend the form to the office."
    assert read_document(tmp_path / "page.html").split() == ["Hello", "&", "welcome"]
    chunks = document_chunks([tmp_path])
    assert [(c.file.rsplit("/", 1)[1], c.index) for c in chunks] == [
        ("notes.md", 0),
        ("page.html", 0),
        ("policy.docx", 0),
    ]


def test_unknown_suffix_and_broken_pdf_are_one_line_errors(tmp_path):
    (tmp_path / "a.xyz").write_text("x")
    with pytest.raises(UserError, match=r"a\.xyz"):
        read_document(tmp_path / "a.xyz")
    (tmp_path / "b.pdf").write_bytes(b"not a pdf")
    with pytest.raises(UserError, match=r"b\.pdf"):
        read_document(tmp_path / "b.pdf")
