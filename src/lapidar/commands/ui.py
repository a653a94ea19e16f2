"""`lapidar ui`: the local web app (upload data, fill a training form, follow runs) over a workspace directory."""

from __future__ import annotations

import ipaddress
import secrets
import threading
import webbrowser
from pathlib import Path
from typing import Annotated

import typer

from lapidar.errors import UserError

__all__ = ["is_loopback", "ui"]


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: addresses only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to an address others reach


def ui(
    host: Annotated[str, typer.Option(help="Address to listen on; anything but loopback needs --token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 7860,
    workspace: Annotated[
        Path, typer.Option(help="Directory holding uploads, configs, runs and jobs (created if missing).")
    ] = Path("lapidar-workspace"),
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Do not open a browser tab.")] = False,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="LAPIDAR_UI_TOKEN", help="Require this token on every request (default: none on loopback)."
        ),
    ] = None,
) -> None:
    """Start the local web app: data upload and checks, a training form, live runs (jobs keep running on close)."""
    if not is_loopback(host) and not token:
        # Anyone who reaches the port could start processes on this machine: refuse without a secret.
        raise UserError(
            f"--host {host} lets other machines reach the app, which starts training processes here; "
            f"set --token or LAPIDAR_UI_TOKEN, e.g. --token {secrets.token_urlsafe(12)}"
        )
    try:
        import uvicorn

        from lapidar.ui.app import create_app
    except ImportError as e:
        raise UserError(f"lapidar ui needs {e.name}: pip install 'lapidar[ui]'") from None
    from lapidar.ui.jobs import JobQueue
    from lapidar.ui.workspace import Workspace

    ws = Workspace(workspace)
    queue = JobQueue(ws)
    queue.start_thread()
    app = create_app(ws.root, token=token, queue=queue)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    typer.echo(f"lapidar ui: {url}  (workspace {ws.root}; Ctrl-C stops the app, running jobs go on)")
    if not no_browser:
        # After a moment, so the server listens when the tab asks for the page.
        threading.Timer(1.0, lambda: webbrowser.open(url)).start()
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        queue.close()
