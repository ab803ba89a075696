"""Turning Hydra and OmegaConf exceptions into diagnostics that say what to do."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping

from hydra.errors import MissingConfigException, OverrideParseException
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    GrammarParseError,
    InterpolationKeyError,
    InterpolationResolutionError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    UnsupportedInterpolationType,
)

from mlform.addresses import Kind
from mlform.config.provenance import COMMAND_LINE, Origin, nearest_origin
from mlform.config.resolvers import ResolverLog
from mlform.diagnostics import Diagnostic


def dotted(full_key: object) -> str | None:
    """OmegaConf's ``a.b[1].c`` as mlform's key path ``a.b.1.c``."""
    if not full_key:
        return None
    return re.sub(r"\[(\d+)\]", r".\1", str(full_key))


def address_of(key: str | None) -> str | None:
    parts = (key or "").split(".")
    if len(parts) < 2:
        return None
    try:
        return f"{Kind.from_section(parts[0]).value}.{parts[1]}"
    except ValueError:
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _where(provenance: Mapping[str, Origin], key: str | None) -> dict[str, object]:
    origin = nearest_origin(provenance, key) if key else None
    where: dict[str, object] = {"key": key, "address": address_of(key)}
    if origin is not None:
        where["file"], where["line"] = origin
    return where


def suggestion(word: str, choices: object) -> str:
    """`` Did you mean 'x'?`` for the closest of ``choices``, or ``""``."""
    names = [str(c) for c in choices] if isinstance(choices, list | tuple | set) else []
    if isinstance(choices, Mapping):
        names = [str(c) for c in choices]
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def override_failure(exc: BaseException) -> Diagnostic:
    """A diagnostic for an override Hydra could not parse or apply."""
    cause = exc.__cause__
    if isinstance(exc, OverrideParseException):
        return Diagnostic.error(
            "invalid command-line override",
            f"{_first_line(exc)}. Overrides use Hydra syntax: key.path=value to change a key, "
            "+key.path=value to add one, ~key.path to delete one.",
            file=COMMAND_LINE,
        )
    if isinstance(cause, ConfigAttributeError | ConfigKeyError) and cause.full_key:
        key = dotted(cause.full_key) or ""
        parent = cause.parent_node
        known = sorted(str(k) for k in parent) if isinstance(parent, Mapping) else []
        hint = suggestion(str(cause.key), known)
        listing = f" Keys there: {', '.join(known)}." if known else ""
        return Diagnostic.error(
            f"override names an unknown key {key}",
            f"{key} is not in the composed config.{hint}{listing} "
            f"To add a new key, write +{key}=VALUE.",
            key=key,
            file=COMMAND_LINE,
            address=address_of(key),
        )
    return Diagnostic.error(
        "cannot apply command-line override",
        f"{_first_line(exc)}. Check the key path and the value.",
        file=COMMAND_LINE,
    )


def composition_failure(exc: BaseException) -> Diagnostic:
    """A diagnostic for a failure while Hydra composed the defaults list and files."""
    if isinstance(exc, MissingConfigException):
        return Diagnostic.error(
            "a config named in a defaults list does not exist",
            f"{_first_line(exc)}. Each defaults entry group/name@package needs a file "
            "configs/group/name.yaml.",
            file="configs/system.yaml",
        )
    return Diagnostic.error(
        "the configuration could not be composed",
        " ".join(str(exc).split()) + ". Check configs/system.yaml and the files it names.",
        file="configs/system.yaml",
    )


def resolution_failure(
    exc: OmegaConfBaseException, provenance: Mapping[str, Origin], log: ResolverLog
) -> Diagnostic:
    """A diagnostic for a value that could not be resolved (interpolations, resolvers)."""
    key = dotted(exc.full_key)
    where = _where(provenance, key)
    if isinstance(exc, InterpolationResolutionError) and "ResolverFailedError" in str(exc):
        failed = log.take_last()
        if failed is not None:
            return Diagnostic.error(failed.summary, failed.detail, **where)
    if isinstance(exc, MissingMandatoryValue):
        return Diagnostic.error(
            f"{key} has no value (???)",
            f"Set {key} in a config file, the stack overlay or with {key}=VALUE.",
            **where,
        )
    if isinstance(exc, InterpolationKeyError):
        return Diagnostic.error(
            f"interpolation in {key} refers to a missing key",
            f"{_first_line(exc)}. ${{a.b}} must name a key of the composed config.",
            **where,
        )
    if isinstance(exc, UnsupportedInterpolationType):
        return Diagnostic.error(
            f"unknown resolver in {key}",
            f"{_first_line(exc)}. Available resolvers: env, file_hash, secret "
            "(plus OmegaConf's oc.*).",
            **where,
        )
    if isinstance(exc, GrammarParseError):
        return Diagnostic.error(
            f"malformed interpolation in {key}",
            f"{_first_line(exc)}. Write ${{key.path}} or ${{resolver:arg}}; escape a literal "
            "dollar-brace as \\${.",
            **where,
        )
    return Diagnostic.error(
        f"cannot resolve {key}" if key else "cannot resolve the config",
        f"{_first_line(exc)}.",
        **where,
    )
