"""What one monitor needs to run, outside any config loading: the scheduler's spec file.

``mlform apply`` writes ``<state dir>/monitors/<name>/spec.json`` (mode 0600: webhook
headers may carry revealed secrets) for the monitor's scheduler process; ``mlform
monitor run`` builds the same :class:`MonitorJob` from the loaded config.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlform.monitoring.history import monitor_dir
from mlform.spec.base import parse_duration

__all__ = ["MonitorJob", "spec_path"]

FORMAT_VERSION = 1
_WEEK_S = 7 * 24 * 3600.0


def spec_path(state_dir: Path, name: str) -> Path:
    return monitor_dir(state_dir, name) / "spec.json"


@dataclass(frozen=True, slots=True)
class MonitorJob:
    name: str  # the monitor's name: "diagnosis-drift"
    config: Mapping[str, Any]  # the monitor's config (MonitorSpec dump, secrets revealed)
    state_dir: Path
    project_dir: Path
    project: str = "mlform"
    stack: str = "dev"
    # The data source config named by labels.source (performance monitors), revealed.
    labels_source: Mapping[str, Any] | None = None
    # The deployment's prediction log retention (seconds); its monitors prune older logs.
    retention_s: float = _WEEK_S
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def deployment(self) -> str:
        return str(self.config["deployment"])

    @property
    def stack_arg(self) -> str | None:
        """The stack as commands take it: None when none was chosen (no overlay)."""
        from mlform.config.compose import DEFAULT_STACK

        overlay = Path(self.project_dir) / "stacks" / f"{self.stack}.yaml"
        return None if self.stack == DEFAULT_STACK and not overlay.exists() else self.stack

    @property
    def type(self) -> str:
        return str(self.config["type"])

    @property
    def action(self) -> str:
        return str(self.config.get("on_breach", "alert"))

    @property
    def every_s(self) -> float:
        return parse_duration(str((self.config.get("schedule") or {}).get("every", "5m")))

    @property
    def directory(self) -> Path:
        return monitor_dir(self.state_dir, self.name)

    @property
    def predictions_dir(self) -> Path:
        return Path(self.state_dir) / "predictions" / self.deployment

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "config": dict(self.config),
            "state_dir": str(self.state_dir),
            "project_dir": str(self.project_dir),
            "project": self.project,
            "stack": self.stack,
            "labels_source": None if self.labels_source is None else dict(self.labels_source),
            "retention_s": self.retention_s,
            "settings": dict(self.settings),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MonitorJob:
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unknown monitor spec format {data.get('format_version')!r}")
        labels = data.get("labels_source")
        return cls(
            name=str(data["name"]),
            config=dict(data["config"]),
            state_dir=Path(data["state_dir"]),
            project_dir=Path(data["project_dir"]),
            project=str(data.get("project", "mlform")),
            stack=str(data.get("stack", "dev")),
            labels_source=None if labels is None else dict(labels),
            retention_s=float(data.get("retention_s", _WEEK_S)),
            settings=dict(data.get("settings") or {}),
        )

    def write(self, path: Path) -> Path:
        """Write the spec atomically, readable by its owner only."""
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(self.to_dict(), handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
        return path

    @classmethod
    def read(cls, path: Path) -> MonitorJob:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
