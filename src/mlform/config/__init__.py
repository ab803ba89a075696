"""Config composition: the only package that imports Hydra and OmegaConf.

:func:`compose_system` composes ``configs/system.yaml`` (its defaults list), the stack
overlay ``stacks/<stack>.yaml`` and Hydra-syntax overrides into a plain dict with the
file and line every key came from.
"""

from __future__ import annotations

from mlform.config.compose import DEFAULT_STACK, available_stacks, compose_system
from mlform.config.composed import ComposedConfig

__all__ = ["DEFAULT_STACK", "ComposedConfig", "available_stacks", "compose_system"]
