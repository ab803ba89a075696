"""``compose_system``: Hydra composition at the edge, with no global state left behind.

Order (later wins): the defaults list of ``configs/system.yaml`` (``group/name@package``
entries, then ``_self_``), the stack overlay ``stacks/<stack>.yaml`` (a config group on
the search path, merged at ``_global_``), then command-line overrides. Hydra runs inside
:func:`_hydra_session`, which restores Hydra's singletons even when composition fails.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.core.singleton import Singleton
from hydra.errors import HydraException, OverrideParseException
from hydra.types import RunMode
from hydra.version import VersionBase
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mlform.addresses import NAME_PATTERN
from mlform.config import failures
from mlform.config.composed import ComposedConfig
from mlform.config.provenance import Provenance, replay_override, replay_source, restrict
from mlform.config.resolvers import ResolverLog, registered_resolvers
from mlform.config.source import SourceFile, read_source, scan_yaml_problems
from mlform.diagnostics import Diagnostic
from mlform.errors import ConfigError

DEFAULT_STACK = "default"
SYSTEM_FILE = "configs/system.yaml"
_STACK_RE = re.compile(rf"^{NAME_PATTERN}$")
_lock = threading.Lock()


def available_stacks(project_dir: Path) -> list[str]:
    """Names of the stack overlays in ``project_dir/stacks``."""
    directory = project_dir / "stacks"
    return sorted(p.stem for p in directory.glob("*.yaml")) if directory.is_dir() else []


def compose_system(
    project_dir: Path, stack: str | None, overrides: Sequence[str] = ()
) -> ComposedConfig:
    """Compose the project's config; ConfigError with diagnostics on any failure."""
    root = Path(project_dir).resolve()
    configs = root / "configs"
    _require_project(root, configs)
    system = read_source(configs / "system.yaml", SYSTEM_FILE)
    stack_file = _stack_source(root, stack) if stack is not None else None
    user_overrides = list(overrides)
    parsed = _parse_overrides(user_overrides)
    hydra_overrides = [f"hydra.searchpath=[{_quote('file://' + root.as_posix())}]"]
    if stack is not None:
        hydra_overrides.append(f"+stacks@_global_={stack}")
    hydra_overrides += user_overrides
    with _lock, _hydra_session(configs), registered_resolvers(root) as log:
        cfg, sources = _compose(root, configs, hydra_overrides, parsed)
        structure = _as_dict(OmegaConf.to_container(cfg, resolve=False))
        provenance, files = _provenance(root, system, stack_file, sources, parsed, structure)
        data = _resolve(cfg, provenance, log)
    return ComposedConfig(
        data=data,
        provenance=provenance,
        stack=stack if stack is not None else DEFAULT_STACK,
        files=files,
        overrides=tuple(user_overrides),
    )


def _require_project(root: Path, configs: Path) -> None:
    if not configs.is_dir():
        raise ConfigError(
            [
                Diagnostic.error(
                    f"no configs/ directory in {root}",
                    "An mlform project keeps its system in configs/system.yaml. Run mlform from "
                    "the project directory, pass --project DIR, or create one with `mlform init`.",
                    file="configs",
                )
            ]
        )
    if not (configs / "system.yaml").is_file():
        raise ConfigError(
            [
                Diagnostic.error(
                    f"no {SYSTEM_FILE} in {root}",
                    "configs/system.yaml is the root of the composition: create it with a "
                    "defaults list naming the files under configs/.",
                    file=SYSTEM_FILE,
                )
            ]
        )


def _stack_source(root: Path, stack: str) -> SourceFile:
    known = available_stacks(root)
    if not _STACK_RE.match(stack) or not (root / "stacks" / f"{stack}.yaml").is_file():
        hint = failures.suggestion(stack, known)
        raise ConfigError(
            [
                Diagnostic.error(
                    f"unknown stack {stack!r}",
                    f"There is no stacks/{stack}.yaml.{hint} Available stacks: "
                    f"{', '.join(known) or 'none (create stacks/<name>.yaml)'}.",
                    file=f"stacks/{stack}.yaml",
                )
            ]
        )
    return read_source(root / "stacks" / f"{stack}.yaml", f"stacks/{stack}.yaml")


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _parse_overrides(overrides: list[str]) -> list[Override]:
    try:
        return OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as exc:
        raise ConfigError([failures.override_failure(exc)]) from None
    except Exception as exc:  # the override grammar raises a few other types
        raise ConfigError([failures.override_failure(exc)]) from None


@contextmanager
def _hydra_session(configs: Path) -> Iterator[None]:
    """Initialise Hydra on ``configs``; afterwards restore its singletons exactly.

    Hydra mutates its singleton objects in place, so what is saved is their state (the
    initialised ``Hydra`` of an enclosing app, the version base), not the objects.
    """
    had_global = GlobalHydra in Singleton._instances
    prior_hydra = GlobalHydra.instance().hydra if had_global else None
    had_version = VersionBase in Singleton._instances
    prior_base = VersionBase.instance().getbase() if had_version else None
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(configs), version_base="1.3"):
            yield
    finally:
        if had_global:
            GlobalHydra.instance().hydra = prior_hydra
        else:
            Singleton._instances.pop(GlobalHydra, None)
        if had_version:
            VersionBase.instance().setbase(prior_base)  # type: ignore[arg-type]
        else:
            Singleton._instances.pop(VersionBase, None)


def _compose(
    root: Path, configs: Path, overrides: list[str], parsed: list[Override]
) -> tuple[DictConfig, list[tuple[str, str]]]:
    """Compose, and return (config path, package) of every source in merge order."""
    loader = GlobalHydra.instance().config_loader()
    captured: list[list[Any]] = []
    original = getattr(loader, "_compose_config_from_defaults_list", None)
    if original is not None:
        # Watch the defaults list Hydra merges, on this session's own loader object, so
        # that it need not be computed a second time.
        def watch(defaults: list[Any], repo: Any) -> DictConfig:
            captured.append(list(defaults))
            result: DictConfig = original(defaults=defaults, repo=repo)
            return result

        loader._compose_config_from_defaults_list = watch  # type: ignore[attr-defined]
    try:
        cfg = compose("system", overrides=overrides)
        defaults = captured[-1] if captured else _compute_defaults(overrides)
    except OmegaConfBaseException as exc:
        raise ConfigError(_composition_diagnostics(root, configs, exc)) from None
    except HydraException as exc:
        if _is_override_failure(exc, parsed):
            raise ConfigError([failures.override_failure(exc)]) from None
        raise ConfigError(_composition_diagnostics(root, configs, exc)) from None
    except Exception as exc:  # a YAML error surfaces as the parser's own type
        raise ConfigError(_composition_diagnostics(root, configs, exc)) from None
    return cfg, _sources(defaults)


def _compute_defaults(overrides: list[str]) -> list[Any]:
    loader = GlobalHydra.instance().config_loader()
    return list(loader.compute_defaults_list("system", overrides, RunMode.RUN).defaults)


def _sources(defaults: list[Any]) -> list[tuple[str, str]]:
    return [
        (d.config_path or "", d.package or "")
        for d in defaults
        if d.config_path
        and not d.config_path.startswith("hydra/")
        and not (d.package or "").startswith("hydra")
    ]


def _is_override_failure(exc: HydraException, parsed: list[Override]) -> bool:
    text = str(exc)
    return any(
        f"'{o.key_or_group}'" in text or o.input_line in text for o in parsed if o.input_line
    )


def _composition_diagnostics(root: Path, configs: Path, exc: BaseException) -> list[Diagnostic]:
    files = [(p, p.relative_to(root).as_posix()) for p in sorted(configs.rglob("*.yaml"))]
    return scan_yaml_problems(files) or [failures.composition_failure(exc)]


def _provenance(
    root: Path,
    system: SourceFile,
    stack_file: SourceFile | None,
    sources: list[tuple[str, str]],
    parsed: list[Override],
    structure: dict[str, Any],
) -> tuple[Provenance, list[str]]:
    provenance: Provenance = {}
    files: list[str] = []
    for config_path, package in sources:
        source: SourceFile | None
        if config_path == "system":
            source = system
        elif stack_file is not None and config_path == f"stacks/{Path(stack_file.file).stem}":
            source = stack_file
        else:
            source = _find_source(root, config_path)
            if source is None:
                continue
        files.append(source.file)
        replay_source(provenance, source, package)
    for override in parsed:
        if override.key_or_group.startswith("hydra") or "/" in override.key_or_group:
            continue
        replay_override(
            provenance, override.key_or_group, delete=override.is_delete(), structure=structure
        )
    return restrict(provenance, structure, (SYSTEM_FILE, None)), files


def _find_source(root: Path, config_path: str) -> SourceFile | None:
    for base, prefix in ((root / "configs", "configs/"), (root, "")):
        path = base / f"{config_path}.yaml"
        if path.is_file():
            return read_source(path, f"{prefix}{config_path}.yaml")
    return None


def _resolve(cfg: DictConfig, provenance: Provenance, log: ResolverLog) -> dict[str, Any]:
    try:
        data = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException:
        problems = list(_resolution_problems(cfg, provenance, log))
        raise ConfigError(problems or [failures.composition_failure(RuntimeError())]) from None
    return _as_dict(data)


def _as_dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(
            [
                Diagnostic.error(
                    "the composed config is not a mapping",
                    "configs/system.yaml must be a mapping of sections (project, data, ...).",
                    file=SYSTEM_FILE,
                )
            ]
        )
    return {str(k): v for k, v in value.items()}


def _resolution_problems(
    node: DictConfig | ListConfig, provenance: Provenance, log: ResolverLog
) -> Iterator[Diagnostic]:
    """Resolve leaf by leaf, yielding a diagnostic for every value that fails."""
    keys: Sequence[Any] = list(node.keys()) if isinstance(node, DictConfig) else range(len(node))
    for key in keys:
        try:
            value = node[key]
        except OmegaConfBaseException as exc:
            yield failures.resolution_failure(exc, provenance, log)
            continue
        if isinstance(value, DictConfig | ListConfig):
            yield from _resolution_problems(value, provenance, log)
