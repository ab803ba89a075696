"""A test-side stand-in for the kubelet and the Job controller, for mlform's training Jobs.

The test control plane (:mod:`support.kube_control_plane`) stores Jobs but runs nothing.
:class:`Kubelet` watches one namespace for Jobs mlform manages and runs each one's pods as
local processes, the way a node would run them:

* one process per completion index (all at once, as ``parallelism`` asks), running the
  container's ``command`` + ``args`` with ``$(VAR)`` references expanded from the
  container's environment (Kubernetes' own rule), in ``cwd`` (the project copy: the image
  is built from the project) with ``bin_dir`` first on ``PATH`` so ``mlform`` and
  ``torchrun`` resolve to the test's virtual environment;
* the environment is the container's ``env`` plus ``JOB_COMPLETION_INDEX`` (the Job
  controller sets it in indexed pods) over a minimal base (``PATH``, ``HOME``, ``LANG``);
* for a static ``torchrun`` rendezvous, ``--master-addr=<pod 0>.<service>`` becomes
  ``127.0.0.1`` (what cluster DNS would resolve it to: pod 0, here on this machine) and
  ``--master-port`` a free port (pods have their own network namespaces; processes here
  share one, and tests run side by side).

Each process is a Pod object too, created as the Job controller creates them (labels
``batch.kubernetes.io/job-name``, ``controller-uid`` and, for indexed Jobs, the completion
index; bound to node ``test-node``) and given the status a kubelet reports when it exits:
phase ``Succeeded`` or ``Failed`` and the container's ``terminated`` state with its exit code,
and, where the container's ``terminationMessagePolicy`` is ``FallbackToLogsOnError`` and it
failed, the last 80 lines / 2 KiB of its output as the message (the kubelet's rule). The pods
carry no ``ownerReferences``: the test control plane has no garbage collector, and deleting a
Job must not wait on one.

When every process has exited it writes the Job's status subresource as the Job controller
would: ``startTime`` first; then ``succeeded``, ``completedIndexes`` (indexed Jobs),
``completionTime`` and the conditions ``SuccessCriteriaMet`` then ``Complete``; or ``failed``
with ``FailureTarget`` then ``Failed`` (reason ``BackoffLimitExceeded``). Current Kubernetes
validates these: a terminal condition needs its interim one, ``completionTime`` only with
``Complete``, counts that add up to the completions.

Each pod's combined output is kept in :attr:`Kubelet.logs` (``(job, index) -> text``).
"""

from __future__ import annotations

import datetime
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

MANAGED = "app.kubernetes.io/managed-by=mlform"
_VAR_RE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
POD_TIMEOUT_S = 600.0
NODE = "test-node"
# The kubelet's FallbackToLogsOnError: the output's last 80 lines, at most 2048 bytes.
MESSAGE_LINES, MESSAGE_BYTES = 80, 2048


def termination_message(output: str) -> str:
    """What a kubelet keeps of a failed container's output as its termination message."""
    tail = "".join(output.splitlines(keepends=True)[-MESSAGE_LINES:]).encode()
    return tail[-MESSAGE_BYTES:].decode(errors="ignore")


def expand(text: str, env: Mapping[str, str]) -> str:
    """``$(VAR)`` replaced by ``env[VAR]`` when defined, ``$$`` by ``$`` (Kubernetes' rule)."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _VAR_RE.sub(one, text)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def local_command(command: Sequence[str], env: Mapping[str, str], port: int) -> list[str]:
    """The pod's command as a process here (module docstring: expansion, rendezvous)."""
    out = []
    for part in command:
        part = expand(part, env)
        if part.startswith("--master-addr="):
            part = "--master-addr=127.0.0.1"
        elif part.startswith("--master-port="):
            part = f"--master-port={port}"
        out.append(part)
    return out


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class JobRun:
    """What the kubelet did with one Job."""

    name: str
    commands: list[list[str]] = field(default_factory=list)
    returncodes: list[int] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None  # the kubelet itself failed (e.g. the status was refused)


class Kubelet:
    """Runs the pods of mlform's Jobs in ``namespace`` (module docstring)."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        *,
        cwd: Path,
        bin_dir: Path,
        poll_s: float = 0.2,
    ) -> None:
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.api = api
        self.namespace, self.cwd, self.bin_dir, self.poll_s = namespace, cwd, bin_dir, poll_s
        self.runs: dict[str, JobRun] = {}
        self.logs: dict[tuple[str, int], str] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watcher = threading.Thread(target=self._watch, daemon=True, name="kubelet")

    def __enter__(self) -> Kubelet:
        self._watcher.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._watcher.join()
        for thread in self._threads:
            thread.join(timeout=POD_TIMEOUT_S)

    # -- watching ----------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                jobs = self.batch.list_namespaced_job(self.namespace, label_selector=MANAGED)
            except Exception:  # the API server is busy for a moment: look again
                time.sleep(self.poll_s)
                continue
            for job in jobs.items:
                uid = job.metadata.uid
                if uid in self.runs or (job.status and job.status.conditions):
                    continue
                run = self.runs[uid] = JobRun(job.metadata.name)
                thread = threading.Thread(target=self._run_job, args=(job, run), daemon=True)
                self._threads.append(thread)
                thread.start()
            time.sleep(self.poll_s)

    def run_of(self, job: str) -> JobRun | None:
        return next((r for r in self.runs.values() if r.name == job), None)

    # -- running -----------------------------------------------------------------------

    def _run_job(self, job: Any, run: JobRun) -> None:
        name = job.metadata.name
        try:
            self._patch(name, {"startTime": _now(), "active": 0})
            spec = job.spec
            completions = int(spec.completions or 1)
            container = spec.template.spec.containers[0]
            declared = {e.name: e.value or "" for e in container.env or ()}
            port = _free_port()
            processes = []
            pods = [self._create_pod(job, index) for index in range(completions)]
            for index in range(completions):
                env = {
                    "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                    "HOME": os.environ.get("HOME", "/root"),
                    "LANG": "C.UTF-8",
                    **declared,
                    "JOB_COMPLETION_INDEX": str(index),
                }
                command = local_command([*container.command, *(container.args or ())], env, port)
                run.commands.append(command)
                processes.append(
                    subprocess.Popen(
                        command,
                        cwd=self.cwd,
                        env=env,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        text=True,
                    )
                )
            for index, process in enumerate(processes):
                try:
                    output, _ = process.communicate(timeout=POD_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    output, _ = process.communicate()
                self.logs[(name, index)] = output
                run.returncodes.append(process.returncode)
                self._pod_exited(pods[index], container, process.returncode, output)
            self._finish(name, completions, run.returncodes, indexed=spec.completion_mode)
        except Exception as exc:
            run.error = f"{type(exc).__name__}: {exc}"
        finally:
            run.done.set()

    def _finish(
        self, name: str, completions: int, codes: Sequence[int], *, indexed: str | None
    ) -> None:
        now = _now()
        succeeded = sum(1 for code in codes if code == 0)
        status: dict[str, Any] = {"active": 0, "succeeded": succeeded}
        if indexed == "Indexed" and succeeded:
            done = [str(i) for i, code in enumerate(codes) if code == 0]
            status["completedIndexes"] = ",".join(done)
        if succeeded == completions:
            status["completionTime"] = now
            status["conditions"] = [
                _condition(
                    "SuccessCriteriaMet",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    now,
                ),
                _condition(
                    "Complete",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    now,
                ),
            ]
        else:
            status["failed"] = len(codes) - succeeded
            message = "Job has reached the specified backoff limit"
            status["conditions"] = [
                _condition("FailureTarget", "BackoffLimitExceeded", message, now),
                _condition("Failed", "BackoffLimitExceeded", message, now),
            ]
        self._patch(name, status)

    def _create_pod(self, job: Any, index: int) -> str:
        """The Pod of completion ``index``, as the Job controller creates it; its name."""
        name = job.metadata.name
        template = self.api.sanitize_for_serialization(job.spec.template)
        meta = template.get("metadata") or {}
        uid = job.metadata.uid
        labels = {
            **(meta.get("labels") or {}),
            "batch.kubernetes.io/job-name": name,
            "job-name": name,
            "batch.kubernetes.io/controller-uid": uid,
            "controller-uid": uid,
        }
        annotations = dict(meta.get("annotations") or {})
        spec = {**template["spec"], "nodeName": NODE}
        if job.spec.completion_mode == "Indexed":
            labels["batch.kubernetes.io/job-completion-index"] = str(index)
            annotations["batch.kubernetes.io/job-completion-index"] = str(index)
            spec["hostname"] = f"{name}-{index}"
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": f"{name}-{index}-",
                "labels": labels,
                "annotations": annotations,
            },
            "spec": spec,
        }
        created = self.core.create_namespaced_pod(self.namespace, body)
        pod: str = created.metadata.name
        now = _now()
        self.core.patch_namespaced_pod_status(
            pod, self.namespace, {"status": {"phase": "Running", "startTime": now}}
        )
        return pod

    def _pod_exited(self, pod: str, container: Any, code: int, output: str) -> None:
        """The status a kubelet reports for ``pod`` once its container exited with ``code``."""
        ended: dict[str, Any] = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": _now(),
            "finishedAt": _now(),
        }
        if code != 0 and container.termination_message_policy == "FallbackToLogsOnError":
            ended["message"] = termination_message(output)
        status = {
            "phase": "Succeeded" if code == 0 else "Failed",
            "containerStatuses": [
                {
                    "name": container.name,
                    "image": container.image,
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "started": False,
                    "state": {"terminated": ended},
                }
            ],
        }
        self.core.patch_namespaced_pod_status(pod, self.namespace, {"status": status})

    def _patch(self, name: str, status: Mapping[str, Any]) -> None:
        self.batch.patch_namespaced_job_status(name, self.namespace, {"status": dict(status)})


def _condition(kind: str, reason: str, message: str, now: str) -> dict[str, str]:
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": now,
        "lastTransitionTime": now,
    }
