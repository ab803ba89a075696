"""The inline Pulumi program for a set of infrastructure resources on a target."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from mlform.infra.model import InfraResource, Manifest, Process
from mlform.pulumi_engine.program_local import local_program
from mlform.pulumi_engine.target import EngineTarget


def build_program(
    resources: Sequence[InfraResource], target: EngineTarget, log_dir: Path
) -> Callable[[], None]:
    """The program that declares ``resources`` on ``target``; ValueError for a misfit."""
    if target.type == "local":
        manifests = [r for r in resources if isinstance(r, Manifest)]
        if manifests:
            names = ", ".join(m.logical_name for m in manifests)
            raise ValueError(
                f"the local target runs processes, not Kubernetes manifests ({names}); "
                "use the render or kubernetes target"
            )
        processes = [r for r in resources if isinstance(r, Process)]
        return local_program(processes, log_dir, target.reveal)
    processes = [r for r in resources if isinstance(r, Process)]
    if processes:
        names = ", ".join(p.logical_name for p in processes)
        raise ValueError(
            f"the {target.type} target applies Kubernetes manifests, not local processes "
            f"({names}); use the local target"
        )
    from mlform.pulumi_engine.program_kubernetes import kubernetes_program

    program: Callable[[], None] = kubernetes_program(
        [r for r in resources if isinstance(r, Manifest)], target
    )
    return program
