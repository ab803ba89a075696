"""Waiting for a Kubernetes Job to finish, as the model step does for its training Job.

:func:`wait_for_job` polls the Job's status (:class:`JobStatusReader`: the ``kubernetes``
client with the target's kubeconfig and context) until a ``Complete`` or ``Failed``
condition, reporting ``waiting for job NS/NAME (1/2 pods succeeded)`` as the step's
progress. It waits even when ``target.wait_for_ready`` is false (a model cannot be
registered before it is trained). A failed Job, a deleted one, or ``training.timeout`` (plus
a grace for the Job controller to report its own deadline) fails the step with a diagnostic
naming the Job and the ``kubectl logs`` command; for a failed Job it shows the last lines each
failed pod printed (:func:`pod_failures`: the containers' termination messages, which the
kubelet fills with the output's tail: the Job's pods use ``terminationMessagePolicy:
FallbackToLogsOnError``). A status read that fails (the API server unreachable for a moment)
is retried until the deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mlform.addresses import Address
from mlform.diagnostics import Diagnostic
from mlform.providers.base import ProviderContext, StepFailed

__all__ = [
    "JobGone",
    "JobState",
    "JobStatusReader",
    "WaitedJob",
    "job_state",
    "logs_command",
    "pod_failures",
    "wait_for_job",
]

WAIT_GRACE_S = 30.0  # past activeDeadlineSeconds, for the Job controller to say Failed
POLL_S = 2.0
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"  # set on its pods by the Job controller
COMPLETION_INDEX_KEY = "batch.kubernetes.io/job-completion-index"  # indexed Jobs' pods
TAIL_LINES = 20  # of each failed pod's output, in the diagnostic
TAIL_PODS = 2  # pods whose output the diagnostic shows (the rest are counted)


@dataclass(frozen=True, slots=True)
class JobState:
    """A Job's status, as far as waiting for it goes."""

    finished: Literal["complete", "failed"] | None
    succeeded: int = 0
    active: int = 0
    failed: int = 0
    reason: str | None = None
    message: str | None = None


def job_state(status: Mapping[str, Any] | None) -> JobState:
    """The state of a Job from its ``status`` (the API's wire form; pure)."""
    status = status or {}
    succeeded, active, failed = (int(status.get(f) or 0) for f in ("succeeded", "active", "failed"))
    finished: Literal["complete", "failed"] | None = None
    reason = message = None
    for condition in status.get("conditions") or ():
        kind = condition.get("type")
        if str(condition.get("status")) == "True" and kind in ("Complete", "Failed"):
            finished = "complete" if kind == "Complete" else "failed"
            reason, message = condition.get("reason"), condition.get("message")
            break
    return JobState(finished, succeeded, active, failed, reason, message)


class JobGone(Exception):
    """The Job was deleted while mlform waited for it."""


@dataclass(frozen=True, slots=True)
class WaitedJob:
    address: Address
    job: str
    namespace: str
    completions: int
    timeout: str
    logs: str  # the kubectl logs command line


def wait_for_job(
    read_status: Callable[[], Mapping[str, Any] | None],
    waited: WaitedJob,
    *,
    timeout_s: float,
    progress: Callable[[str, float | None], None],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    poll_s: float = POLL_S,
    read_failures: Callable[[], Sequence[str]] = tuple,
) -> JobState:
    """Poll until the Job completes; StepFailed when it fails, vanishes or times out.

    ``read_failures`` gives what the Job's failed pods printed (:func:`pod_failures`); a
    failure to read it leaves the diagnostic without it.
    """
    deadline = clock() + timeout_s + WAIT_GRACE_S
    shown, error = "", ""
    while True:
        try:
            state = job_state(read_status())
            error = ""
        except JobGone:
            raise StepFailed(
                job_problem(waited, "was deleted while mlform waited for it")
            ) from None
        except Exception as exc:  # the API server is unreachable for a moment: keep polling
            state, error = JobState(finished=None), f"{type(exc).__name__}: {exc}"
        if state.finished == "complete":
            return state
        if state.finished == "failed":
            if state.reason == "DeadlineExceeded":
                raise StepFailed(job_problem(waited, _timed_out(waited)))
            why = ": ".join(p for p in (state.reason, state.message) if p) or "failed"
            raise StepFailed(job_problem(waited, f"failed ({why})", _failures(read_failures)))
        message = (
            f"waiting for job {waited.namespace}/{waited.job} "
            f"({state.succeeded}/{waited.completions} pods succeeded)"
        )
        if error:
            message += f"; reading its status failed: {error}"
        if message != shown:
            progress(message, None)
            shown = message
        if clock() >= deadline:
            raise StepFailed(job_problem(waited, _timed_out(waited)))
        sleep(poll_s)


def _timed_out(waited: WaitedJob) -> str:
    return (
        f"did not complete within models.{waited.address.name}.training.timeout ({waited.timeout})"
    )


def _failures(read: Callable[[], Sequence[str]]) -> Sequence[str]:
    try:
        return read()
    except Exception:  # the pods cannot be read: the diagnostic names the logs command
        return ()


def job_problem(waited: WaitedJob, what: str, failures: Sequence[str] = ()) -> Diagnostic:
    printed = "".join(f"{failure}\n" for failure in failures)
    return Diagnostic.error(
        f"{waited.address}: training job {waited.namespace}/{waited.job} {what}",
        f"{printed}See {'everything' if printed else 'what'} the training printed: {waited.logs}. "
        "The Job stays in the cluster until the next training replaces it. Fix the model (or "
        f"raise models.{waited.address.name}.training.timeout) and apply again.",
        address=str(waited.address),
        key=f"models.{waited.address.name}.training",
    )


def pod_failures(pods: Sequence[Mapping[str, Any]]) -> list[str]:
    """What each failed container of ``pods`` (the API's wire form) printed last (pure).

    One entry per failed container, pods by completion index then name: ``pod NAME exited
    CODE (REASON); its last lines:`` and the last :data:`TAIL_LINES` lines of its
    termination message, indented; at most :data:`TAIL_PODS` entries, then a count.
    """

    def order(pod: Mapping[str, Any]) -> tuple[int, str]:
        meta = pod.get("metadata") or {}
        index = str((meta.get("annotations") or {}).get(COMPLETION_INDEX_KEY, ""))
        return (int(index) if index.isdigit() else 0, str(meta.get("name", "")))

    found: list[str] = []
    for pod in sorted(pods, key=order):
        name = str((pod.get("metadata") or {}).get("name", "?"))
        for status in (pod.get("status") or {}).get("containerStatuses") or ():
            ended = (status.get("state") or {}).get("terminated") or {}
            code = ended.get("exitCode")
            if not ended or code in (0, None):
                continue
            head = f"pod {name} exited {code}" + (
                f" ({ended['reason']})" if ended.get("reason") else ""
            )
            lines = str(ended.get("message") or "").rstrip().splitlines()[-TAIL_LINES:]
            if not lines:
                found.append(f"{head}, printing nothing the kubelet kept.")
                continue
            found.append(f"{head}; its last lines:\n" + "\n".join(f"    {line}" for line in lines))
    if len(found) > TAIL_PODS:
        found = [*found[:TAIL_PODS], f"({len(found) - TAIL_PODS} more failed pods)"]
    return found


def logs_command(context: ProviderContext, job: str, namespace: str) -> str:
    target = context.settings.get("target") or {}
    command = f"kubectl logs job/{job} -n {namespace}"
    if target.get("context"):
        command += f" --context {target['context']}"
    if target.get("kubeconfig"):
        command += f" --kubeconfig {target['kubeconfig']}"
    return command


class JobStatusReader:
    """Reads Job statuses with the ``kubernetes`` client and the target's kubeconfig."""

    def __init__(self, address: Address, context: ProviderContext) -> None:
        self.address, self.context = address, context
        self._client: Any = None
        self._core: Any = None

    def __enter__(self) -> Callable[[str, str], Mapping[str, Any] | None]:
        try:
            from kubernetes import client, config
            from kubernetes.client.exceptions import ApiException
        except ImportError as exc:
            raise StepFailed(
                Diagnostic.error(
                    f"{self.address}: training on the cluster needs the kubernetes Python client",
                    "Install it next to mlform (pip install kubernetes), or set "
                    f"models.{self.address.name}.training.where: local.",
                    address=str(self.address),
                    key=f"models.{self.address.name}.training.where",
                )
            ) from exc
        target = dict(self.context.settings.get("target") or {})
        kubeconfig = target.get("kubeconfig")
        if kubeconfig:
            path = Path(str(kubeconfig)).expanduser()
            if not path.is_absolute() and (Path(self.context.project_dir) / path).exists():
                path = Path(self.context.project_dir) / path
            kubeconfig = str(path)
        try:
            self._client = config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, context=target.get("context")
            )
        except Exception as exc:  # ConfigException, or a kubeconfig that does not parse
            raise StepFailed(
                Diagnostic.error(
                    f"{self.address}: cannot read the cluster's kubeconfig: {exc}",
                    "Set target.kubeconfig and target.context to a cluster this machine can "
                    "reach (mlform waits for the training Job there).",
                    address=str(self.address),
                    key="target.kubeconfig",
                )
            ) from exc
        batch = client.BatchV1Api(self._client)
        self._core = client.CoreV1Api(self._client)

        def read(name: str, namespace: str) -> Mapping[str, Any] | None:
            try:
                job = batch.read_namespaced_job_status(name, namespace)
            except ApiException as exc:
                if exc.status == 404:
                    raise JobGone(name) from exc
                raise
            status: Mapping[str, Any] | None = self._client.sanitize_for_serialization(job.status)
            return status

        return read

    def failures(self, name: str, namespace: str) -> list[str]:
        """What the Job's failed pods printed last (:func:`pod_failures`)."""
        if self._client is None:
            return []
        pods = self._core.list_namespaced_pod(namespace, label_selector=f"{JOB_NAME_LABEL}={name}")
        return pod_failures([self._client.sanitize_for_serialization(p) for p in pods.items])

    def __exit__(self, *_exc: object) -> None:
        if self._client is not None:
            self._client.close()
