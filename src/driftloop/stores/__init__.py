"""The three stores every stage talks through: tracking (MLflow), metadata (SQL), prediction log (Parquet).

`open_stores(cfg)` is the one way a stage gets them, so every stage agrees on where they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from driftloop.stores.metadata import MetadataStore
from driftloop.stores.tracking import TrackingStore

if TYPE_CHECKING:
    from driftloop.config import Config

__all__ = ["Stores", "open_stores"]


@dataclass
class Stores:
    cfg: Config
    metadata: MetadataStore
    tracking: TrackingStore

    @property
    def log_dir(self) -> Path:
        return self.cfg.stores.resolved_log_dir()

    @property
    def datasets_dir(self) -> Path:
        return self.cfg.stores.datasets_dir()

    @property
    def model_name(self) -> str:
        return self.cfg.project.name

    def close(self) -> None:
        self.metadata.close()


def open_stores(cfg: Config) -> Stores:
    """Connect to the metadata store (creating/migrating its tables) and set up the tracking store."""
    cfg.stores.root.mkdir(parents=True, exist_ok=True)
    return Stores(
        cfg=cfg,
        metadata=MetadataStore.connect(cfg.stores.resolved_database_url()),
        tracking=TrackingStore.from_config(cfg),
    )
