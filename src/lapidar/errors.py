"""User-facing errors: one message, exit status 2, no traceback (the CLI turns them into that)."""

from __future__ import annotations

__all__ = ["UserError", "unknown_choice"]


class UserError(Exception):
    """A problem the user can fix (bad file, bad value, unknown name). The CLI prints it and exits with 2."""


def unknown_choice(kind: str, name: str, choices: list[str] | tuple[str, ...]) -> UserError:
    """Build the error for a registry lookup that failed, naming every valid choice."""
    return UserError(f"unknown {kind} {name!r}; valid choices: {', '.join(sorted(choices))}")
