"""Applying infrastructure: mlform vs a bare ``pulumi up`` of the same program.

Targets (issue #3): a no-op ``mlform apply`` runs no Pulumi update and takes under 2 s;
when only infrastructure changed, mlform's overhead over a bare ``pulumi up`` of the same
program is at most 10 %.

One process resource (``python -m http.server`` answering a health URL) owned by one
object whose provider is a plugin (the same one the integration tests use). Measured side
by side, interleaved, each as a fresh process as a user would run it:

- mlform: ``mlform apply -y data.tumors.description=vN`` (config → plan → state lock →
  provider → one ``pulumi up`` → state), the process restarted with a new env;
- bare: a Python script running the same inline program with the Automation API
  (``stack.up()``), changing the same env value: what a Pulumi user would run;
- no-op: ``mlform apply -y`` with nothing changed.

Prints medians and ratios; asserts nothing.

    .venv/bin/python benchmarks/infra_apply.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from test_infrastructure_apply import PLUGIN, SYSTEM  # noqa: E402

from bare_pulumi import timed  # noqa: E402

BARE = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    sys.path.insert(0, {benchmarks!r})
    from bare_pulumi import run

    from mlform.addresses import Address
    from mlform.infra.model import Process
    from mlform.pulumi_engine.program_local import local_program

    work, description, project_dir = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    process = Process(
        owner=Address.parse("data.tumors"),
        name="server",
        command=(sys.executable, "-m", "http.server", "{{port}}", "--bind", "127.0.0.1"),
        env={{"DESCRIPTION": description}},
        health_path="/",
        cwd=project_dir,
    )
    destroy = len(sys.argv) > 4 and sys.argv[4] == "destroy"
    run(work, local_program([process], work / "logs"), destroy=destroy)
    """
).format(benchmarks=str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        plugin = root / "plugin"
        plugin.mkdir()
        (plugin / "mlform_http_plugin.py").write_text(PLUGIN)
        info = plugin / "mlform_http_plugin-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: p\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(
            "[mlform.providers]\ndata = mlform_http_plugin:DataServer\n"
        )
        project = root / "project"
        (project / "configs").mkdir(parents=True)
        (project / "configs" / "system.yaml").write_text(SYSTEM)
        bare_script = root / "bare.py"
        bare_script.write_text(BARE)
        env = {**os.environ, "PYTHONPATH": str(plugin)}
        mlform = [py, "-m", "mlform", "-C", str(project)]
        bare = [py, str(bare_script), str(root / "bare")]
        # Warm both (first create), then measure interleaved updates.
        timed([*mlform, "apply", "-y", "data.tumors.description=v0"], env)
        timed([*bare, "v0", str(project)], env)
        samples: dict[str, list[float]] = {"mlform": [], "bare": [], "noop": []}
        try:
            for n in range(1, runs + 1):
                override = f"data.tumors.description=v{n}"
                samples["mlform"].append(timed([*mlform, "apply", "-y", override], env))
                samples["bare"].append(timed([*bare, f"v{n}", str(project)], env))
                samples["noop"].append(timed([*mlform, "apply", "-y", override], env))
        finally:
            timed([*mlform, "destroy", "-y", f"data.tumors.description=v{runs}"], env)
            timed([*bare, "x", str(project), "destroy"], env)
            _sweep(root)
    med = {name: statistics.median(values) for name, values in samples.items()}
    print(f"runs: {runs} (median, fresh process each, one process resource)")
    print(f"  bare pulumi up (Automation API script):  {med['bare']:.2f} s")
    print(f"  mlform apply, infrastructure changed:     {med['mlform']:.2f} s")
    print(f"  overhead ratio mlform / bare:            {med['mlform'] / med['bare']:.3f}")
    print(f"  mlform apply, nothing changed (no-op):    {med['noop']:.2f} s")
    print(json.dumps({k: [round(v, 3) for v in vs] for k, vs in samples.items()}))


def _sweep(root: Path) -> None:
    """Kill anything a failed run left behind (pids recorded in logs are not needed:
    every benchmark process runs http.server from this temporary tree)."""
    out = subprocess.run(["pgrep", "-f", "http.server"], capture_output=True, text=True)
    for pid in out.stdout.split():
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if cwd.startswith(str(root)):
            os.kill(int(pid), signal.SIGKILL)


if __name__ == "__main__":
    main()
