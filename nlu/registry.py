"""Versioned models on disk: one folder per model under `models/`, the newest one served."""

from __future__ import annotations

from pathlib import Path

from nlu.model import NLUModel


class ModelRegistry:
    def __init__(self, models_dir: str | Path) -> None:
        self.models_dir = Path(models_dir)

    def save(self, model: NLUModel) -> Path:
        return model.save(self.models_dir / model.meta.id)

    def versions(self) -> list[Path]:
        """Model folders, oldest first (ids start with their creation time)."""
        if not self.models_dir.is_dir():
            return []
        return sorted(p for p in self.models_dir.iterdir() if (p / "meta.json").is_file())

    def newest(self) -> Path | None:
        versions = self.versions()
        return versions[-1] if versions else None
