"""Cold and warm set-up times of the toolchain mlform builds from Go modules.

Each build script (scripts/build-*.sh) runs twice with ``MLFORM_TOOLCHAIN_CACHE``, ``GOCACHE``
and ``GOMODCACHE`` pointed at an empty temporary directory: the first run is a cold machine
(modules downloaded from the proxy, everything compiled), the second a warm one (the cached
binary is found and checked). The caches under ``~/.cache`` are not touched.

    .venv/bin/python benchmarks/toolchain_build.py [etcd kube-apiserver pulumi pulumi-kubernetes]

Cold builds take minutes each (kube-apiserver ~7.5, the Pulumi CLI 6-9, the kubernetes
plugin ~18 on 2 cores); the default is the two Kubernetes control-plane binaries.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = {
    "etcd": "build-etcd.sh",
    "kube-apiserver": "build-kube-apiserver.sh",
    "pulumi": "build-pulumi.sh",
    "pulumi-kubernetes": "build-pulumi-kubernetes.sh",
}


def _timed(script: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / script)], env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"scripts/{script} failed:\n{result.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("tools", nargs="*", default=["etcd", "kube-apiserver"])
    tools = parser.parse_args().tools
    unknown = sorted(set(tools) - set(SCRIPTS))
    if unknown:
        raise SystemExit(f"unknown tool(s) {unknown}; choose from {sorted(SCRIPTS)}")
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for tool in tools:
        root = Path(tempfile.mkdtemp(prefix=f"mlform-toolchain-{tool}-"))
        env = {
            **os.environ,
            "MLFORM_TOOLCHAIN_CACHE": str(root / "mlform"),
            "GOCACHE": str(root / "gocache"),
            "GOMODCACHE": str(root / "gomodcache"),
        }
        try:
            cold = _timed(SCRIPTS[tool], env)
            warm = _timed(SCRIPTS[tool], env)
        finally:
            subprocess.run(["chmod", "-R", "u+w", str(root)], check=False)
            shutil.rmtree(root, ignore_errors=True)
        print(f"{tool:18s} cold {cold / 60:5.1f} min   warm {warm:5.2f} s", flush=True)


if __name__ == "__main__":
    main()
