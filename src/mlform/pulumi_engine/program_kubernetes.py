"""The Pulumi program of the ``render`` and ``kubernetes`` targets.

One ``pulumi_kubernetes.Provider`` (logical name ``mlform-kubernetes``) and, per
:class:`~mlform.infra.model.Manifest`, one typed pulumi-kubernetes resource whose logical
name is ``manifest.logical_name``. The class is looked up in the SDK's own registry of
resource modules (type token ``kubernetes:<group/version>:<Kind>`` -> class, the table
``pulumi_kubernetes/__init__.py`` registers); kinds it does not know (custom resources)
become ``apiextensions.CustomResource``.

- ``render``: the provider writes one YAML file per object under ``render_directory``
  (``0-crd/`` for CustomResourceDefinitions, ``1-manifest/`` for everything else) and talks
  to no cluster; ``destroy`` deletes the files. **Secrets are written in plain text** there
  (``stringData`` becomes base64 ``data``: an encoding, not encryption), like any other
  field: a rendered directory holding Secrets must be treated as secret
  (or Secrets kept out of it, e.g. with an external-secrets operator). In Pulumi's own state
  their ``data``/``stringData`` are secret values, encrypted with the stack's passphrase
  (the SDK's typed ``core.v1.Secret`` marks them; a Secret must not go through the
  ``CustomResource`` fallback, which would not).
- ``kubernetes``: kubeconfig and context come from the target (default: the ambient
  kubeconfig); server-side apply is the provider's default. ``target.namespace`` (the
  stack's namespace) is the default namespace of objects that name none. The target's
  ``stack_objects`` (the stack's own Namespace, the team's GPU ResourceQuota:
  :mod:`mlform.infra.kubernetes_stack`) are declared whenever any manifest is, under
  their own logical names (``stack/...``, no owner), so they go with the stack's last object.

Secrets: the manifests mlform records hold ``${secret:}`` redaction tokens; the program's
copy of a v1 Secret has them revealed (:func:`revealed`, with ``target.reveal``) in its
``stringData``/``data`` only. The typed ``core.v1.Secret`` makes those secret values, so
Pulumi's state holds them encrypted and the API server gets the clear values. A changed
secret value changes its token's HMAC, hence the manifest, hence the object.

Objects in a namespace that the same program creates depend on that Namespace. With
``target.skip_await`` every object gets the ``pulumi.com/skipAwait: "true"`` annotation.

On the ``kubernetes`` target two more annotations go on every object (checked against a real
API server in tests/integration/test_kubernetes_target.py):

- ``pulumi.com/patchForce: "true"``: mlform's server-side apply takes over the fields it
  declares from any other field manager. Without it a field edited behind mlform's back
  (``kubectl scale``, ``kubectl edit``) is found by ``refresh`` but can never be repaired:
  the apply fails with a field conflict. Fields mlform does not declare stay with whoever
  set them (server-side apply semantics).
- with ``target.skip_await`` also ``pulumi.com/deletionPropagationPolicy: "background"``: the
  provider's default foreground deletion leaves the object in place with a
  ``foregroundDeletion`` finalizer until the garbage collector removes it, and waits for that
  (up to 10 minutes) for every kind that ``skipAwait`` does not cover (Services, ConfigMaps,
  Secrets, ...). Not waiting for controllers must include not waiting for that one.
"""

from __future__ import annotations

import importlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from pulumi.runtime import rpc

from mlform.infra.model import Manifest
from mlform.pulumi_engine.target import EngineTarget
from mlform.secrets import is_sensitive

PROVIDER_NAME = "mlform-kubernetes"
SKIP_AWAIT = "pulumi.com/skipAwait"
PATCH_FORCE = "pulumi.com/patchForce"
DELETION_PROPAGATION = "pulumi.com/deletionPropagationPolicy"
_CAMEL_RE = re.compile(r"(?<!^)(?=[A-Z])")


def pulumi_module(api_version: str) -> str:
    """The SDK's module of an apiVersion: ``v1`` -> ``core/v1``, ``apps/v1`` unchanged."""
    return api_version if "/" in api_version else f"core/{api_version}"


def resource_class(api_version: str, kind: str) -> type[pulumi.CustomResource] | None:
    """The SDK's typed class for ``apiVersion``/``kind``; None when it has none (a CRD's)."""
    module = pulumi_module(api_version)
    # The registry and its ``mod_info`` are SDK internals (no public accessor); a unit test
    # (test_the_sdk_registry_gives_the_typed_classes) notices when an upgrade changes them.
    registered = rpc.get_resource_module("kubernetes", module, "")
    info: Mapping[str, Any] = getattr(registered, "mod_info", None) or {}
    class_name = (info.get("classes") or {}).get(f"kubernetes:{module}:{kind}")
    if class_name is None:
        return None
    cls: type[pulumi.CustomResource] = getattr(importlib.import_module(info["fqn"]), class_name)
    return cls


def make_provider(target: EngineTarget) -> k8s.Provider:
    """The one provider of the program, configured for ``target``."""
    if target.type == "render":
        if target.render_directory is None:
            raise ValueError("the render target needs a render_directory")
        directory = os.path.abspath(os.path.expanduser(target.render_directory))
        return k8s.Provider(PROVIDER_NAME, render_yaml_to_directory=directory)
    if target.type == "kubernetes":
        kubeconfig = target.kubeconfig
        if kubeconfig is not None and os.path.exists(os.path.expanduser(kubeconfig)):
            kubeconfig = os.path.abspath(os.path.expanduser(kubeconfig))
        return k8s.Provider(
            PROVIDER_NAME,
            kubeconfig=kubeconfig,
            context=target.context,
            namespace=target.namespace,
        )
    raise ValueError(f"the {target.type} target does not take Kubernetes manifests")


def _check_unique(
    manifests: Sequence[Manifest], stack_objects: Mapping[str, Mapping[str, Any]] | None = None
) -> None:
    seen_names: set[str] = set()
    seen_objects: dict[tuple[str, str, str, str], str] = {}
    named = [(m.logical_name, m.body) for m in manifests]
    for logical_name, body in [*(stack_objects or {}).items(), *named]:
        if logical_name in seen_names:
            raise ValueError(f"two manifests are named {logical_name}")
        seen_names.add(logical_name)
        meta = body["metadata"]
        identity = (
            str(body["apiVersion"]),
            str(body["kind"]),
            str(meta.get("namespace", "")),
            str(meta.get("name", "")),
        )
        if identity in seen_objects:
            raise ValueError(
                f"{logical_name} and {seen_objects[identity]} declare the same "
                f"Kubernetes object ({'/'.join(p for p in identity if p)})"
            )
        seen_objects[identity] = logical_name


def _is_namespace(manifest: Manifest) -> bool:
    return (manifest.body["apiVersion"], manifest.body["kind"]) == ("v1", "Namespace")


def target_annotations(target: EngineTarget) -> dict[str, str]:
    """The ``pulumi.com/*`` annotations every object gets on ``target`` (module docstring)."""
    added: dict[str, str] = {}
    if target.skip_await:
        added[SKIP_AWAIT] = "true"
    if target.type == "kubernetes":
        added[PATCH_FORCE] = "true"
        if target.skip_await:
            added[DELETION_PROPAGATION] = "background"
    return added


def declare_manifest(
    manifest: Manifest,
    provider: k8s.Provider,
    *,
    depends_on: Sequence[pulumi.Resource] = (),
    skip_await: bool = False,
    annotations: Mapping[str, str] | None = None,
) -> pulumi.CustomResource:
    """Register ``manifest`` as one resource named ``manifest.logical_name``.

    ``annotations`` are added to the object's own (``skip_await`` adds ``SKIP_AWAIT``).
    """
    return declare_object(
        manifest.logical_name,
        manifest.inputs(),  # a deep copy with sorted keys: deterministic and ours to edit
        provider,
        depends_on=depends_on,
        skip_await=skip_await,
        annotations=annotations,
    )


def declare_object(
    logical_name: str,
    body: dict[str, Any],
    provider: k8s.Provider,
    *,
    depends_on: Sequence[pulumi.Resource] = (),
    skip_await: bool = False,
    annotations: Mapping[str, str] | None = None,
) -> pulumi.CustomResource:
    """Register the object ``body`` (edited in place) as one resource named ``logical_name``."""
    api_version, kind = str(body.pop("apiVersion")), str(body.pop("kind"))
    body.pop("status", None)
    if "name" not in body["metadata"]:
        raise ValueError(f"{logical_name}: a manifest needs metadata.name")
    added = {**(annotations or {}), **({SKIP_AWAIT: "true"} if skip_await else {})}
    if added:
        own = body["metadata"].setdefault("annotations", {})
        body["metadata"]["annotations"] = dict(sorted({**own, **added}.items()))
    opts = pulumi.ResourceOptions(provider=provider, depends_on=list(depends_on))
    cls = resource_class(api_version, kind)
    if cls is None:
        extra = sorted(set(body) - {"metadata", "spec"})
        if extra:
            raise ValueError(
                f"{logical_name}: {api_version} {kind} is not a built-in kind, and a "
                f"custom resource can only carry metadata and spec (not {', '.join(extra)})"
            )
        return k8s.apiextensions.CustomResource(
            logical_name,
            api_version=api_version,
            kind=kind,
            metadata=body["metadata"],
            spec=body.get("spec"),
            opts=opts,
        )
    kwargs = {_CAMEL_RE.sub("_", key).lower(): value for key, value in body.items()}
    try:
        return cls(logical_name, opts=opts, **kwargs)
    except TypeError as exc:
        raise ValueError(f"{logical_name}: {api_version} {kind}: {exc}") from exc


def declare_manifests(
    manifests: Sequence[Manifest], target: EngineTarget
) -> dict[str, pulumi.CustomResource]:
    """Register the provider, the target's stack-wide objects and every manifest (inside a
    running Pulumi program); the stack-wide objects only when there is a manifest."""
    _check_unique(manifests, target.stack_objects)
    provider = make_provider(target)
    annotations = target_annotations(target)
    declared: dict[str, pulumi.CustomResource] = {}
    namespaces: dict[str, pulumi.CustomResource] = {}
    stack_objects = target.stack_objects if manifests else {}
    for logical_name, body in stack_objects.items():  # the stack's namespace first
        if _is_namespace_body(body):
            resource = declare_object(logical_name, _copy(body), provider, annotations=annotations)
            declared[logical_name] = resource
            namespaces[str(body["metadata"]["name"])] = resource
    for manifest in manifests:  # namespaces first: the others may depend on them
        if _is_namespace(manifest):
            resource = declare_manifest(manifest, provider, annotations=annotations)
            declared[manifest.logical_name] = resource
            namespaces[str(manifest.body["metadata"]["name"])] = resource

    def depends_on(body: Mapping[str, Any]) -> list[pulumi.Resource]:
        in_namespace = namespaces.get(str(body["metadata"].get("namespace", "")))
        return [in_namespace] if in_namespace is not None else []

    for logical_name, body in stack_objects.items():
        if not _is_namespace_body(body):
            declared[logical_name] = declare_object(
                logical_name,
                _copy(body),
                provider,
                depends_on=depends_on(body),
                annotations=annotations,
            )
    for manifest in manifests:
        if _is_namespace(manifest):
            continue
        declared[manifest.logical_name] = declare_manifest(
            manifest, provider, depends_on=depends_on(manifest.body), annotations=annotations
        )
    return declared


def _copy(body: Mapping[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(json.dumps(body, sort_keys=True))
    return copied


def _is_namespace_body(body: Mapping[str, Any]) -> bool:
    return (body["apiVersion"], body["kind"]) == ("v1", "Namespace")


def _is_secret(manifest: Manifest) -> bool:
    return (manifest.body["apiVersion"], manifest.body["kind"]) == ("v1", "Secret")


def revealed(manifest: Manifest, reveal: Callable[[Any], Any] | None) -> Manifest:
    """``manifest`` with the clear values of the secret tokens in a Secret's data.

    Only a v1 Secret's ``stringData`` and ``data`` are revealed (the typed
    ``core.v1.Secret`` makes them secret values in Pulumi's state); a token anywhere else
    stays a token. The manifest mlform records keeps its tokens: this copy exists only
    while the program runs. ValueError when there is a token and no ``reveal``.
    """
    if not _is_secret(manifest):
        return manifest
    fields = {f: manifest.body[f] for f in ("stringData", "data") if f in manifest.body}
    if not is_sensitive(fields):
        return manifest
    if reveal is None:
        raise ValueError(
            f"{manifest.logical_name}: the Secret holds ${{secret:}} values and the target "
            "has no way to reveal them"
        )
    return Manifest(
        owner=manifest.owner,
        name=manifest.name,
        body={**manifest.body, **reveal(fields)},
    )


def kubernetes_program(manifests: Sequence[Manifest], target: EngineTarget) -> Callable[[], None]:
    """An inline program declaring ``manifests`` on ``target`` (render or kubernetes).

    Secrets' tokens are revealed here (:func:`revealed`), before ``pulumi up`` starts: a
    secret that is missing or changed since the plan fails the run before it changes
    anything, with the ConfigError that says how to set it.
    """
    if not target.needs_kubernetes:
        raise ValueError(f"the {target.type} target does not take Kubernetes manifests")
    _check_unique(manifests, target.stack_objects)
    declared = tuple(revealed(m, target.reveal) for m in manifests)

    def program() -> None:
        declare_manifests(declared, target)

    return program
