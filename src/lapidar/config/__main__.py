"""`python -m lapidar.config [--check] [PATH]`: write the config reference (default docs/config.md); with --check,
exit 1 when the file differs from what the schema generates."""

from __future__ import annotations

import sys
from pathlib import Path

from lapidar.config.reference import REFERENCE_PATH, reference_markdown
from lapidar.io import write_text


def main(argv: list[str]) -> int:
    """Write (or with --check, compare) the reference; return the exit status."""
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    path = Path(args[0]) if args else REFERENCE_PATH
    text = reference_markdown()
    if check:
        current = path.read_text(encoding="utf-8") if path.is_file() else ""
        if current != text:
            sys.stderr.write(f"{path} is out of date; regenerate it with: python -m lapidar.config\n")
            return 1
        return 0
    write_text(path, text)
    sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
