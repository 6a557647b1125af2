"""The loop page: one web page that shows and steers the whole loop (deployment, canary, drift, performance,
traffic, events), served by `driftloop serve` at /ui and by `driftloop ui` for a project without a server.

It sits above `loop` (it reuses the audit and canary-evidence readers) and attaches to the serving app from
outside (`server.create_app_from_env`), so `serve` keeps importing nothing above itself.
"""

from driftloop.ui.routes import UiContext, install_ui
from driftloop.ui.server import create_app_from_env, create_ui_app

__all__ = ["UiContext", "create_app_from_env", "create_ui_app", "install_ui"]
