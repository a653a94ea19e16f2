"""Read the user's documents (PDF, DOCX, Markdown, HTML, text) as plain text and cut them into chunks.

The first stage of `lapidar data synth --mode documents` (see synth.py): each chunk becomes one request for
question/answer pairs, and its file and chunk number are recorded on every row made from it, so a rerun can skip the
chunks already done.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

from lapidar.errors import UserError

__all__ = ["SUFFIXES", "Chunk", "chunk_text", "document_chunks", "read_document"]

SUFFIXES = (".pdf", ".docx", ".md", ".markdown", ".html", ".htm", ".txt")
_TAG_RE = re.compile(r"<(script|style)\b.*?</\1>|<[^>]+>", re.S | re.I)
_BLOCK_RE = re.compile(r"</?(p|div|br|li|h[1-6]|tr|section|article)\b[^>]*>", re.I)


@dataclass(frozen=True)
class Chunk:
    """A passage of one document: `file` and `index` identify it across reruns."""

    file: str
    index: int
    text: str

    @property
    def key(self) -> str:
        """Stable identity of the chunk (what the resumable output records)."""
        return f"{self.file}#{self.index}"


def read_document(path: Path) -> str:
    """The text of one document, by its suffix; an unreadable or unknown file is a UserError naming it."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise UserError(
            f"{path}: cannot read {suffix or 'files without a suffix'}; documents must be {', '.join(SUFFIXES)}"
        )
    try:
        if suffix == ".pdf":
            from pypdf import PdfReader

            return "\n\n".join(page.extract_text() or "" for page in PdfReader(path).pages)
        if suffix == ".docx":
            import docx

            return "\n\n".join(p.text for p in docx.Document(str(path)).paragraphs)
        text = path.read_text(encoding="utf-8")
    except ImportError as e:
        raise UserError(f"{path}: reading {suffix} needs the synth extra: pip install 'lapidar[synth]'") from e
    except UserError:
        raise
    except Exception as e:  # a damaged PDF/DOCX raises many different errors; all mean "this file cannot be read"
        raise UserError(
            f"{path}: cannot read it as {suffix} ({e}); export it again or remove it from the inputs"
        ) from e
    if suffix in (".html", ".htm"):
        # Block tags become paragraph breaks so chunks still split at paragraphs.
        text = html.unescape(_TAG_RE.sub("", _BLOCK_RE.sub("\n\n", text)))
    return text


def chunk_text(text: str, max_chars: int = 2000) -> list[str]:
    """Paragraphs packed greedily into chunks of at most `max_chars` characters (a longer paragraph is cut at
    sentence ends, then hard): whole paragraphs keep a passage readable for the question writer."""
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    pieces: list[str] = []
    for p in filter(None, paragraphs):
        while len(p) > max_chars:
            cut = p.rfind(". ", 0, max_chars)
            cut = cut + 1 if cut > max_chars // 2 else max_chars
            pieces.append(p[:cut].strip())
            p = p[cut:].strip()
        if p:
            pieces.append(p)
    chunks: list[str] = []
    for piece in pieces:
        if chunks and len(chunks[-1]) + 2 + len(piece) <= max_chars:
            chunks[-1] += "\n\n" + piece
        else:
            chunks.append(piece)
    return chunks


def document_chunks(paths: list[Path], max_chars: int = 2000) -> list[Chunk]:
    """Every chunk of every document (directories are searched for the known suffixes, in sorted order)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"{path}: no such file or directory")
    return [Chunk(str(f), i, t) for f in files for i, t in enumerate(chunk_text(read_document(f), max_chars))]
