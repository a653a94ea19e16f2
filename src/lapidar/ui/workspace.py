"""The web app's workspace: one directory holding uploads, configs, runs, jobs, feedback and exports.

Every path that comes from the browser goes through `Workspace.safe_path`, so nothing the page sends can read or
write outside the workspace (`..`, absolute paths and symlinks that lead out are refused)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lapidar.errors import UserError

__all__ = ["MAX_UPLOAD_BYTES", "SUBDIRS", "Workspace"]

SUBDIRS = ("data", "configs", "runs", "jobs", "feedback", "exports")
MAX_UPLOAD_BYTES = 512 * 1024 * 1024  # a bigger training file belongs on the command line, not in a browser upload
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass
class Workspace:
    """A workspace directory (created on first use) and the checks on every path inside it."""

    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root).expanduser().resolve()
        for sub in SUBDIRS:
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def dir(self, sub: str) -> Path:
        """One of the workspace's subdirectories (data, configs, runs, jobs, feedback, exports)."""
        assert sub in SUBDIRS, sub
        return self.root / sub

    def safe_path(self, relative: str) -> Path:
        """`relative` (as the browser sent it) resolved inside the workspace; UserError when it would leave it."""
        if not relative or "\x00" in relative:
            raise UserError("empty path: name a file inside the workspace, e.g. data/train.jsonl")
        p = Path(relative)
        if p.is_absolute() or relative.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", relative):
            raise UserError(f"{relative}: absolute paths are refused; give a path inside the workspace ({self.root})")
        if ".." in p.parts:
            raise UserError(f"{relative}: '..' is refused; give a path inside the workspace ({self.root})")
        resolved = (self.root / p).resolve()  # follows symlinks: one that points outside is caught below
        if resolved != self.root and self.root not in resolved.parents:
            raise UserError(f"{relative}: leads outside the workspace ({self.root}) through a symlink; refused")
        return resolved

    def relative(self, path: Path) -> str:
        """The workspace-relative form of a path inside it (what the page shows and sends back)."""
        return str(Path(path).resolve().relative_to(self.root))

    @staticmethod
    def check_name(name: str, what: str = "name") -> str:
        """A run or file name: letters, digits, '.', '_' and '-' only (it becomes a directory name)."""
        if not _NAME.match(name or "") or name in {".", ".."}:
            raise UserError(
                f"{what} {name!r}: use letters, digits, '.', '_' and '-' (up to 100 characters), e.g. my-run-1"
            )
        return name

    def run_dir(self, name: str) -> Path:
        """runs/NAME (the name checked)."""
        return self.dir("runs") / self.check_name(name, "run name")

    def data_files(self) -> list[dict]:
        """Every file under data/: workspace path, size, modification time."""
        out = []
        for f in sorted(self.dir("data").rglob("*")):
            if f.is_file():
                st = f.stat()
                out.append({"path": self.relative(f), "size": st.st_size, "modified": st.st_mtime})
        return out

    def upload_target(self, filename: str) -> Path:
        """data/<filename>, refusing names that are not a plain file name."""
        base = Path(filename or "").name
        self.check_name(base, "file name")
        return self.dir("data") / base
