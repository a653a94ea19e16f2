"""Commands that live outside cli.py: each module holds typer-annotated functions that cli.py registers."""

from __future__ import annotations

import os

__all__ = ["quiet_libraries"]


def quiet_libraries() -> None:
    """Offline-first defaults for every command that loads a model: no telemetry, no library progress bars."""
    import warnings

    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import transformers

    warnings.filterwarnings("ignore", category=FutureWarning)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
