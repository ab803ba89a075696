"""Where a stack's infrastructure goes, as the engine needs to know it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class EngineTarget:
    """``local`` runs processes; ``render`` writes manifests; ``kubernetes`` applies them.

    ``skip_await`` stops pulumi-kubernetes waiting for readiness (a test API server has
    no kubelet, so nothing would ever become ready); real clusters keep the default.

    ``namespace`` is the stack's namespace (the provider's default for objects that name
    none); ``stack_objects`` are the stack-wide objects the program declares besides the
    owners' manifests whenever it declares any (logical name -> body: the stack's own
    Namespace, the team's GPU ResourceQuota; see :mod:`mlform.infra.kubernetes_stack`).

    ``reveal`` puts the clear values back for ``${secret:}`` redaction tokens; the program
    applies it to Secrets (and local processes' ``env``) only, at the last moment, so that
    mlform's state keeps the tokens and Pulumi's state holds the values encrypted. None:
    a resource holding a token is refused rather than declared with the token.
    """

    type: Literal["local", "render", "kubernetes"]
    render_directory: Path | None = None
    kubeconfig: str | None = None
    context: str | None = None
    namespace: str = "default"
    skip_await: bool = False
    stack_objects: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    reveal: Callable[[Any], Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.type == "render" and self.render_directory is None:
            raise ValueError("the render target needs a render_directory")

    @property
    def needs_kubernetes(self) -> bool:
        return self.type != "local"
