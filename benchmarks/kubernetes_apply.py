"""Applying 50 model deployments to Kubernetes: mlform vs a bare ``pulumi up`` of the same objects.

Target (issue #5): against the test API server (etcd + kube-apiserver built by
scripts/build-etcd.sh and scripts/build-kube-apiserver.sh), ``mlform apply`` of a generated
system with 50 deployments has at most 10 % overhead over a bare ``pulumi up`` of the same
Kubernetes objects.

The system is the example's data, features and scikit-learn model (trained once, untimed)
plus ``--deployments`` (50) generated deployments of that model: each a Deployment, a Service
and a PodDisruptionBudget. Measured side by side, interleaved, each as a fresh process as a
user would run it:

- mlform: ``mlform apply -y -s bench`` with the deployments added to the stack (config →
  plan → state lock → 50 deployment steps through the rollout controller → Pulumi → state);
- bare: a Python script running the Automation API's ``stack.up()`` of an inline program
  that declares exactly the objects mlform recorded for those deployments (read from its
  state), in another namespace: what a Pulumi user would run for the same objects.

Between runs both sides are destroyed (untimed). Prints medians and the ratio; asserts nothing.

    .venv/bin/python benchmarks/kubernetes_apply.py [--runs 3] [--deployments 50]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from example_project import copy_example  # noqa: E402
from support.kube_control_plane import ControlPlane, start_control_plane  # noqa: E402

from bare_pulumi import timed  # noqa: E402

BARE = textwrap.dedent(
    """
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, {benchmarks!r})
    from bare_pulumi import run

    from mlform.infra.model import from_record
    from mlform.pulumi_engine.program_kubernetes import kubernetes_program
    from mlform.pulumi_engine.target import EngineTarget

    work, records, kubeconfig, context = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    manifests = [from_record(r) for r in json.loads(Path(records).read_text())]
    target = EngineTarget(
        type="kubernetes", kubeconfig=kubeconfig, context=context, namespace="bare",
        skip_await=True,
    )
    destroy = len(sys.argv) > 5 and sys.argv[5] == "destroy"
    run(work, kubernetes_program(manifests, target), destroy=destroy)
    """
).format(benchmarks=str(Path(__file__).resolve().parent))

SYSTEM_DEFAULTS = """\
defaults:
  - data/tumors@data.tumors
  - data/patients@data.patients
  - features/diagnosis@features.diagnosis
  - models/diagnosis@models.diagnosis
  - _self_
"""


def _stack(plane: ControlPlane, deployments: int) -> str:
    lines = [
        "# @package _global_",
        "models:",
        "  diagnosis:",
        "    estimator: {n_estimators: 20}",
        "    training: {where: local}  # trained once, untimed: no kubelet runs Jobs here",
        "target:",
        "  type: kubernetes",
        f"  kubeconfig: {plane.kubeconfig}",
        f"  context: {plane.context}",
        "  namespace: bench",
        "  wait_for_ready: false",
    ]
    if deployments:
        lines.append("deployments:")
        for n in range(deployments):
            lines += [
                f"  api-{n:02d}:",
                "    model: diagnosis",
                "    replicas: 1",
                "    resources: cpu-small",
                "    strategy: {type: rolling}",
            ]
    return "\n".join(lines) + "\n"


def _project(root: Path) -> Path:
    project = copy_example(root / "project")
    system = project / "configs" / "system.yaml"
    text = system.read_text()
    start, end = text.index("defaults:"), text.index("  - _self_\n") + len("  - _self_\n")
    system.write_text(text[:start] + SYSTEM_DEFAULTS + text[end:])
    return project


def _bin_dir(script: str) -> Path:
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / script)],
        env={**os.environ, "MLFORM_TOOLCHAIN_NO_BUILD": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"scripts/{script}: {out.stderr.strip()} (run scripts/setup.sh first)")
    return Path(out.stdout.strip().splitlines()[-1])


def _records(project: Path, mlform: list[str], env: dict[str, str], count: int) -> list[object]:
    records: list[object] = []
    for n in range(count):
        shown = subprocess.run(
            [*mlform, "state", "show", f"deployment.api-{n:02d}", "-s", "bench"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        records += json.loads(shown.stdout)["outputs"]["infrastructure"]
    return records


def _namespaces(plane: ControlPlane, *names: str) -> None:
    from kubernetes import client, config

    api = client.CoreV1Api(
        config.new_client_from_config(config_file=str(plane.kubeconfig), context=plane.context)
    )
    for name in names:
        api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--deployments", type=int, default=50)
    args = parser.parse_args()
    count = args.deployments
    etcd, apiserver = _bin_dir("build-etcd.sh"), _bin_dir("build-kube-apiserver.sh")
    root = Path(tempfile.mkdtemp(prefix="mlform-bench-k8s-"))
    plane = start_control_plane(
        root / "plane", etcd=etcd / "etcd", kube_apiserver=apiserver / "kube-apiserver"
    )
    try:
        _namespaces(plane, "bench", "bare")
        project = _project(root)
        stack_file = project / "stacks" / "bench.yaml"
        env = {**os.environ, "NO_COLOR": "1"}
        env.pop("MLFORM_STACK", None)
        mlform = [sys.executable, "-m", "mlform", "-C", str(project)]
        bare_script = root / "bare.py"
        bare_script.write_text(BARE)
        records_file = root / "records.json"
        bare = [sys.executable, str(bare_script), str(root / "bare")]
        bare_args = [str(records_file), str(plane.kubeconfig), plane.context]

        stack_file.write_text(_stack(plane, 0))
        trained = timed([*mlform, "apply", "-y", "-s", "bench"], env)
        print(f"set-up: data, features and model applied in {trained:.1f} s (untimed)")
        samples: dict[str, list[float]] = {"mlform": [], "bare": []}
        for run in range(1, args.runs + 1):
            stack_file.write_text(_stack(plane, count))
            samples["mlform"].append(timed([*mlform, "apply", "-y", "-s", "bench"], env))
            if run == 1:
                records_file.write_text(json.dumps(_records(project, mlform, env, count)))
                print(f"objects per side: {len(json.loads(records_file.read_text()))}")
            samples["bare"].append(timed([*bare, *bare_args], env))
            stack_file.write_text(_stack(plane, 0))
            timed([*mlform, "apply", "-y", "-s", "bench"], env)  # removes the deployments
            timed([*bare, *bare_args, "destroy"], env)
            print(
                f"run {run}: mlform {samples['mlform'][-1]:.1f} s, "
                f"bare {samples['bare'][-1]:.1f} s",
                flush=True,
            )
    finally:
        plane.stop()
        shutil.rmtree(root, ignore_errors=True)
    med = {name: statistics.median(values) for name, values in samples.items()}
    print(f"runs: {args.runs} (median, fresh process each, {count} deployments)")
    print(f"  bare pulumi up (Automation API script):  {med['bare']:.2f} s")
    print(f"  mlform apply:                             {med['mlform']:.2f} s")
    print(f"  overhead ratio mlform / bare:            {med['mlform'] / med['bare']:.3f}")
    print(json.dumps({k: [round(v, 3) for v in vs] for k, vs in samples.items()}))


if __name__ == "__main__":
    main()
