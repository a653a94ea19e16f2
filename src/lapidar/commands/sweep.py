"""`lapidar sweep`: search training settings with Optuna; every trial is an ordinary run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["sweep"]

console = Console()


def sweep(
    config: Annotated[Path, typer.Argument(help="Training YAML with a `sweep:` section (see configs/sweep.yaml).")],
    trials: Annotated[
        int | None, typer.Option(min=1, help="Trials this command runs (default: sweep.trials); added to the study.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="Sweep directory: trial-NNNN runs, study.db, best.yaml, report.html.")
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(help="Optuna storage URL shared by several processes or machines (default: OUTPUT/study.db)."),
    ] = None,
    study_name: Annotated[
        str | None, typer.Option(help="Study name in the storage (default: the config's name).")
    ] = None,
    timeout: Annotated[float | None, typer.Option(min=0, help="Start no new trial after this many seconds.")] = None,
) -> None:
    """Search the config's `sweep.params` with Optuna, pruning bad trials from their validation losses; writes a
    results table, best.yaml (for `lapidar train`) and an offline report.html. A rerun continues the study."""
    try:
        import optuna  # noqa: F401
        import plotly  # noqa: F401
    except ImportError:
        from lapidar.errors import UserError

        raise UserError("lapidar sweep needs Optuna and plotly: pip install 'lapidar[sweep]'") from None
    from lapidar.commands import quiet_libraries
    from lapidar.recipes.sweep import main

    quiet_libraries()
    main(config, trials, output, storage, study_name, timeout, console)
