"""`driftloop ui`: the loop page for a project with no server running (the stores only; no admin API).

With `driftloop serve` running, the same page is at the server's /ui, with the pool's state and Act.
"""

from __future__ import annotations

from typing import Annotated

import typer

from driftloop.cli.options import ConfigOption

__all__ = ["ui"]


def ui(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8050,
    config: ConfigOption = None,
) -> None:
    """Serve the loop page (deployment, canary, drift, performance, events) from the project's stores."""
    import uvicorn

    from driftloop.config import load_config
    from driftloop.ui.server import create_ui_app

    app = create_ui_app(load_config(config))
    typer.echo(f"loop page on http://{host}:{port}/ui (Ctrl-C to stop)")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
