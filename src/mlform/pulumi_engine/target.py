"""Where a stack's infrastructure goes, as the engine needs to know it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True, slots=True)
class EngineTarget:
    """``local`` runs processes; ``render`` writes manifests; ``kubernetes`` applies them.

    ``skip_await`` stops pulumi-kubernetes waiting for readiness (a test API server has
    no kubelet, so nothing would ever become ready); real clusters keep the default.
    """

    type: Literal["local", "render", "kubernetes"]
    render_directory: Path | None = None
    kubeconfig: str | None = None
    context: str | None = None
    namespace: str = "default"
    skip_await: bool = False

    def __post_init__(self) -> None:
        if self.type == "render" and self.render_directory is None:
            raise ValueError("the render target needs a render_directory")

    @property
    def needs_kubernetes(self) -> bool:
        return self.type != "local"
