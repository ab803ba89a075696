"""Serving: ``mlform serve`` vs ``mlflow models serve`` on the same scikit-learn model.

Targets (from the issue): mlform sustains at least 2x MLflow's requests per second (same
worker count); mlform's p99 latency is at most 10 ms at a constant 500 requests/s; the
traffic router adds at most 1 ms at p50.

One fitted estimator (``--model logreg``: ``make_pipeline(StandardScaler(),
LogisticRegression(max_iter=1000))``; ``--model forest``: the example system's scaled random
forest, 200 trees of depth 8) trained on scikit-learn's breast-cancer set (30 features) with
mlform's own trainer and registered in a temporary mlform registry. The same pickled
estimator is saved as an MLflow model (``mlflow.sklearn.save_model``, run by a separate
MLflow venv). Each server is a fresh process, run alone while it is measured, and answers
the same one row:

- mlform: ``python -m mlform serve model.cancer@v1 --registry R --port P --workers N``,
  KServe V2 JSON ``POST /v2/models/cancer/infer`` (one FP32 tensor of shape [1, 30]);
- MLflow: ``mlflow models serve -m PATH --env-manager local --workers N`` (uvicorn +
  FastAPI), ``POST /invocations`` with ``{"inputs": [[30 numbers]]}`` (``--mlflow-format
  dataframe_split`` sends a one-row data frame instead).

Per server and worker count, after 2 s of warm-up load: the maximum throughput (closed
loop, ``wrk -t1 -c16``; a Lua script POSTs the body) and the latency at a constant
500 requests/s (open loop, ``vegeta attack -rate=500``). Then the router: the same mlform
server measured directly and through ``python -m mlform.serving.router`` at 200 and 500
requests/s, the two paths alternating every 2 s. A "floor" server (aiohttp sending a constant
answer, no model) is measured like the others: what the machine and load generator allow.
Each figure is the median of ``--repeats`` runs, every run with fresh server processes; the
load average and CPU pressure (Linux PSI) before each measurement are recorded, and
``--settle PCT`` waits for a quiet machine first. Prints a table, the ratios and PASS/FAIL
per target; asserts nothing (exit 0), exit 1 when a server fails or answers wrongly, 2 when
a tool is missing (with the command that installs it).

    .venv/bin/python benchmarks/serving.py [--settle 15] [--duration 10] [--workers 1,2]
        [--repeats 3] [--model logreg|forest] [--json OUT] [--setup]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CACHE = Path.home() / ".cache" / "mlform"
MLFLOW_VERSION = "3.17.2"
MLFLOW_VENV = CACHE / "bench" / "mlflow-venv"
VEGETA_VERSION = "v12.13.0"
VEGETA = CACHE / "tools" / f"vegeta-{VEGETA_VERSION}" / "vegeta"
MODEL_ADDRESS = "model.cancer"
MODEL_NAME = "cancer"
CONSTANT_RATE = 500
ROUTER_RATES = (200, 500)
ROUTER_SLICE_S = 2.0
WARMUP_S = 2.0
READY_TIMEOUT_S = 180.0

ESTIMATORS: dict[str, dict[str, Any]] = {
    "logreg": {
        "_target_": "sklearn.pipeline.make_pipeline",
        "_args_": [
            {"_target_": "sklearn.preprocessing.StandardScaler"},
            {"_target_": "sklearn.linear_model.LogisticRegression", "max_iter": 1000},
        ],
    },
    "forest": {  # the example system's configs/models/diagnosis.yaml
        "_target_": "ml.pipelines.make_forest",
        "n_estimators": 200,
        "max_depth": 8,
        "random_state": 42,
    },
}

# wrk: POST the body on every request; print the summary as one JSON line at the end.
WRK_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[@BODY@]==]

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %.0f, "duration_us": %.0f, "connect": %.0f, "read": %.0f, '
    .. '"write": %.0f, "status": %.0f, "timeout": %.0f, "p50_us": %.0f, "p90_us": %.0f, '
    .. '"p99_us": %.0f, "mean_us": %.1f, "max_us": %.0f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
"""


# The floor: an aiohttp server that reads the body and sends a constant V2 answer, no model,
# no parsing. Its latency at 500/s is what this machine and the load generator cost alone.
FLOOR_SERVER = """
import sys
from aiohttp import web

REPLY = (
    b'{"model_name":"cancer","outputs":[{"name":"predict","datatype":"INT64",'
    b'"shape":[1],"data":[1]}]}'
)


async def infer(request):
    await request.read()
    return web.Response(body=REPLY, content_type="application/json")


async def ready(request):
    return web.Response(body=b"{}", content_type="application/json")


app = web.Application()
app.router.add_post("/v2/models/cancer/infer", infer)
app.router.add_get("/v2/health/ready", ready)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


class Broken(RuntimeError):
    """Something in the benchmark failed (not a slow result): exit 1."""


# -- tools ---------------------------------------------------------------------------------


def _mlflow_python() -> Path:
    return MLFLOW_VENV / "bin" / "python"


def _sklearn_version() -> str:
    import sklearn

    return str(sklearn.__version__)


def setup_mlflow_venv() -> None:
    """Create the MLflow venv (``--setup``): mlflow and this venv's scikit-learn version."""
    MLFLOW_VENV.parent.mkdir(parents=True, exist_ok=True)
    commands = [
        ["python3", "-m", "venv", str(MLFLOW_VENV)],
        [
            str(MLFLOW_VENV / "bin" / "pip"),
            "install",
            f"mlflow=={MLFLOW_VERSION}",
            f"scikit-learn=={_sklearn_version()}",
        ],
    ]
    for command in commands:
        print("$", " ".join(command), flush=True)
        subprocess.run(command, check=True)


def mlform_server_command(py: str) -> list[str] | None:
    """``mlform serve``, else the entry points of its modules; None when none runs."""
    candidates = (
        [py, "-m", "mlform", "serve"],
        [py, "-m", "mlform.cli.serve_cmd", "serve"],  # the app with serve added
        [py, "-m", "mlform.serving.server"],
    )
    for command in candidates:
        result = subprocess.run(
            [*command, "--help"], capture_output=True, text=True, cwd=REPO, check=False
        )
        if result.returncode == 0:
            return command
    return None


def check_tools(want_mlform: bool, want_mlflow: bool, setup: bool) -> str:
    """The vegeta binary; prints how to install what is missing and exits 2."""
    missing: list[str] = []
    if shutil.which("wrk") is None:
        missing.append("wrk: apt-get install -y wrk")
    vegeta = str(VEGETA) if VEGETA.is_file() else shutil.which("vegeta")
    if vegeta is None:
        missing.append(
            f"vegeta: GOBIN={VEGETA.parent} go install "
            f"github.com/tsenart/vegeta/v12@{VEGETA_VERSION}"
        )
    if want_mlflow and not (MLFLOW_VENV / "bin" / "mlflow").is_file():
        if setup:
            setup_mlflow_venv()
        else:
            missing.append(
                f"MLflow venv: python3 -m venv {MLFLOW_VENV} && {MLFLOW_VENV}/bin/pip install "
                f"mlflow=={MLFLOW_VERSION} scikit-learn=={_sklearn_version()}  "
                "(or run this benchmark with --setup)"
            )
    if want_mlform and mlform_server_command(sys.executable) is None:
        missing.append(
            "mlform serve: none of `python -m mlform serve --help`, `python -m "
            "mlform.cli.serve_cmd serve --help`, `python -m mlform.serving.server --help` "
            "runs in this venv (pip install -e '.[dev]'?)"
        )
    if missing:
        print("missing tools:", file=sys.stderr)
        for line in missing:
            print(f"  {line}", file=sys.stderr)
        raise SystemExit(2)
    assert vegeta is not None
    return vegeta


def tool_versions(vegeta: str, want_mlflow: bool) -> dict[str, str]:
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    versions = {
        "python": platform.python_version(),
        "scikit-learn": _sklearn_version(),
        "numpy": np.__version__,
        "wrk": (wrk.stdout + wrk.stderr).splitlines()[0].split(" [")[0],
        "vegeta": VEGETA_VERSION if vegeta == str(VEGETA) else vegeta,
    }
    with contextlib.suppress(ImportError):
        import aiohttp

        versions["aiohttp"] = aiohttp.__version__
    if want_mlflow:
        probe = subprocess.run(
            [
                str(_mlflow_python()),
                "-c",
                "import mlflow, sklearn, uvicorn, fastapi; print(mlflow.__version__, "
                "sklearn.__version__, uvicorn.__version__, fastapi.__version__)",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        names = ("mlflow", "mlflow-venv scikit-learn", "uvicorn", "fastapi")
        versions.update(zip(names, probe.stdout.split(), strict=True))
    return versions


# -- the model -----------------------------------------------------------------------------


@dataclass
class Model:
    kind: str
    ref: str
    registry: Path
    artifact: Path  # the stored artifact directory (model.joblib, meta.json)
    row: list[float]  # one test row, float32 values as Python floats
    feature_names: list[str]
    expected: int  # the estimator's class for ``row``
    accuracy: float


def build_model(root: Path, kind: str) -> Model:
    """Train with mlform's trainer and register the artifact in a fresh registry."""
    sys.path.insert(0, str(REPO))  # ml.pipelines for --model forest
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    from mlform.registry.versions import ModelRegistry
    from mlform.training.sklearn_trainer import load_sklearn, train_sklearn
    from mlform.training.types import Split, TrainingData

    base = load_breast_cancer()
    x = base.data.astype(np.float32)
    y = base.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=0, stratify=y
    )
    data = TrainingData(
        task="classification",
        feature_names=tuple(str(n) for n in base.feature_names),
        label="target",
        train=Split(x_train, y_train),
        test=Split(x_test, y_test),
        classes=(0, 1),
    )
    spec = {"framework": "sklearn", "task": "classification", "estimator": ESTIMATORS[kind]}
    trained = train_sklearn(spec, data, progress=lambda _m, _f: None, address=MODEL_ADDRESS)
    files = root / "files"
    trained.save(files)
    accuracy = float(np.mean(trained.predictor.predict(x_test) == y_test))
    registry = ModelRegistry(root / "registry")
    digest = registry.artifacts.put_dir(files)
    version = registry.register(
        MODEL_ADDRESS, digest, status="accepted", metrics={"accuracy": accuracy}
    )
    artifact = registry.artifacts.path_of(digest)
    row = x_test[:1]
    stored = load_sklearn(artifact)  # what the server will load
    return Model(
        kind=kind,
        ref=version.ref,
        registry=registry.root,
        artifact=artifact,
        row=[float(v) for v in row[0]],
        feature_names=list(data.feature_names),
        expected=int(stored.predict(row)[0]),
        accuracy=accuracy,
    )


def save_mlflow_model(model: Model, target: Path) -> None:
    """The same pickled estimator as an MLflow model, saved by the MLflow venv."""
    # MLflow 3 saves with skops by default and refuses types skops does not trust (a
    # forest's trees); the estimator is our own, so its types are trusted explicitly.
    script = (
        "import sys, joblib, mlflow.sklearn, skops.io\n"
        "estimator = joblib.load(sys.argv[1])\n"
        "trusted = skops.io.get_untrusted_types(data=skops.io.dumps(estimator))\n"
        "mlflow.sklearn.save_model(estimator, sys.argv[2], skops_trusted_types=trusted or None)\n"
    )
    result = subprocess.run(
        [str(_mlflow_python()), "-c", script, str(model.artifact / "model.joblib"), str(target)],
        capture_output=True,
        text=True,
        check=False,
        cwd=target.parent,
    )
    if result.returncode != 0:
        raise Broken(f"mlflow.sklearn.save_model failed:\n{result.stdout}\n{result.stderr}")


# -- servers -------------------------------------------------------------------------------


@dataclass
class Endpoint:
    """What a load generator needs: where to POST which body."""

    url: str
    body: bytes


@dataclass
class Server:
    name: str  # "mlform" | "mlflow" | "router"
    command: list[str]
    ready_path: str
    endpoint: Endpoint
    port: int
    log: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    process: subprocess.Popen[bytes] | None = None

    def start(self, cwd: Path) -> None:
        with self.log.open("ab") as handle:
            try:
                self.process = subprocess.Popen(
                    self.command,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    cwd=cwd,
                    env=self.env,
                    start_new_session=True,  # its own process group: stopped with its workers
                )
            except OSError as exc:
                raise Broken(f"cannot start {self.name}: {exc}") from None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise Broken(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                status, _ = request("GET", self.port, self.ready_path, timeout=2)
                if status == 200:
                    return
            time.sleep(0.1)
        raise Broken(f"{self.name} not ready after {READY_TIMEOUT_S:.0f} s:\n{self.tail()}")

    def stop(self) -> None:
        """SIGTERM to the server's process group, wait; SIGKILL after 20 s."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        # Workers of the group that outlived the parent (they should not).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@contextlib.contextmanager
def running(servers: Sequence[Server], cwd: Path) -> Iterator[None]:
    try:
        for server in servers:
            server.start(cwd)
        yield
    finally:
        for server in reversed(servers):
            server.stop()


def machine_load() -> dict[str, float]:
    """Load average (1 min) and the CPU pressure of Linux PSI (percent of the last 10 s in
    which some runnable task waited for a CPU): other work on the machine shows up here."""
    out = {"load1": os.getloadavg()[0]}
    with contextlib.suppress(OSError, ValueError, IndexError):
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0].split()
        fields = dict(item.split("=") for item in some[1:])
        out["cpu_pressure_avg10"] = float(fields["avg10"])
        out["cpu_pressure_avg60"] = float(fields["avg60"])
    return out


def settle(threshold: float, limit_s: float = 90.0) -> dict[str, float]:
    """Wait (at most ``limit_s``) until the CPU pressure is below ``threshold`` percent
    (0: do not wait); returns the machine's load then, with the seconds waited."""
    began = time.monotonic()
    load = machine_load()
    while (
        threshold > 0
        and load.get("cpu_pressure_avg10", 0.0) >= threshold
        and time.monotonic() - began < limit_s
    ):
        time.sleep(1.0)
        load = machine_load()
    load["waited_s"] = round(time.monotonic() - began, 1)
    return load


def _load_text(load: dict[str, float]) -> str:
    text = f"load {load['load1']:.2f}"
    if "cpu_pressure_avg10" in load:
        text += f", CPU pressure {load['cpu_pressure_avg10']:.0f} %"
    if load.get("waited_s"):
        text += f", waited {load['waited_s']:.0f} s"
    return text


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request(
    method: str, port: int, path: str, body: bytes | None = None, timeout: float = 10
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def v2_body(model: Model) -> bytes:
    tensor = {"name": "input-0", "shape": [1, len(model.row)], "datatype": "FP32"}
    return json.dumps({"inputs": [{**tensor, "data": model.row}]}).encode()


def mlflow_body(model: Model, form: str) -> bytes:
    if form == "inputs":
        return json.dumps({"inputs": [model.row]}).encode()
    split = {"columns": model.feature_names, "data": [model.row]}
    return json.dumps({"dataframe_split": split}).encode()


def mlform_server(command: list[str], model: Model, workers: int, logs: Path, tag: str) -> Server:
    port = free_port()
    path = f"/v2/models/{MODEL_NAME}/infer"
    return Server(
        name="mlform",
        command=[
            *command,
            model.ref,
            "--registry",
            str(model.registry),
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--name",
            MODEL_NAME,
        ],
        ready_path="/v2/health/ready",
        endpoint=Endpoint(f"http://127.0.0.1:{port}{path}", v2_body(model)),
        port=port,
        log=logs / f"mlform-{tag}.log",
    )


def mlflow_server(
    mlflow_model: Path, model: Model, workers: int, logs: Path, tag: str, form: str
) -> Server:
    port = free_port()
    env = dict(os.environ)
    env["PATH"] = f"{MLFLOW_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"  # its uvicorn
    env.pop("VIRTUAL_ENV", None)
    return Server(
        name="mlflow",
        command=[
            str(MLFLOW_VENV / "bin" / "mlflow"),
            "models",
            "serve",
            "-m",
            str(mlflow_model),
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        ready_path="/ping",
        endpoint=Endpoint(f"http://127.0.0.1:{port}/invocations", mlflow_body(model, form)),
        port=port,
        log=logs / f"mlflow-{tag}.log",
        env=env,
    )


def floor_server(tmp: Path, logs: Path, tag: str) -> Server:
    port = free_port()
    script = tmp / "floor_server.py"
    script.write_text(FLOOR_SERVER)
    path = f"/v2/models/{MODEL_NAME}/infer"
    return Server(
        name="floor",
        command=[sys.executable, str(script), str(port)],
        ready_path="/v2/health/ready",
        endpoint=Endpoint(f"http://127.0.0.1:{port}{path}", b""),
        port=port,
        log=logs / f"floor-{tag}.log",
    )


def router_server(upstream: Server, tmp: Path, logs: Path, tag: str) -> Server:
    port = free_port()
    routes = tmp / f"routes-{tag}.json"
    table = {
        "generation": 1,
        "upstreams": {"v1": {"url": f"http://127.0.0.1:{upstream.port}", "version": "1"}},
        "split": {"v1": 100},
        "route_by": "weight",
    }
    routes.write_text(json.dumps(table))
    path = upstream.endpoint.url.split(str(upstream.port), 1)[1]
    return Server(
        name="router",
        command=[
            sys.executable,
            "-m",
            "mlform.serving.router",
            "--port",
            str(port),
            "--routes",
            str(routes),
        ],
        ready_path="/-/health",
        endpoint=Endpoint(f"http://127.0.0.1:{port}{path}", upstream.endpoint.body),
        port=port,
        log=logs / f"router-{tag}.log",
    )


def predicted_class(server: Server) -> int:
    """POST the row once; the class the server answers (exit 1 on an error answer)."""
    port = int(server.endpoint.url.split(":")[2].split("/")[0])
    path = "/" + server.endpoint.url.split("/", 3)[3]
    status, raw = request("POST", port, path, server.endpoint.body)
    if status != 200:
        raise Broken(f"{server.name} answered {status}: {raw[:500]!r}")
    answer = json.loads(raw)
    try:
        if "predictions" in answer:  # MLflow: {"predictions": [1]}
            return int(np.asarray(answer["predictions"]).reshape(-1)[0])
        return v2_class(answer["outputs"])
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise Broken(f"{server.name}: cannot read a class from {raw[:500]!r} ({exc})") from None


def v2_class(outputs: list[dict[str, Any]]) -> int:
    """The class in a V2 response: ``predict``, else an integer output, else an argmax."""
    for output in outputs:
        if output.get("name") == "predict":
            return int(np.asarray(output["data"]).reshape(-1)[0])
    for output in outputs:
        if str(output.get("datatype", "")).upper().startswith(("INT", "UINT")):
            return int(np.asarray(output["data"]).reshape(-1)[0])
    for output in outputs:
        shape = list(output.get("shape", []))
        if len(shape) == 2 and shape[0] == 1:
            return int(np.argmax(np.asarray(output["data"], dtype=float).reshape(shape)))
    return int(np.asarray(outputs[0]["data"]).reshape(-1)[0])


# -- load generators -----------------------------------------------------------------------


def run_wrk(endpoint: Endpoint, duration: float, connections: int, lua: Path) -> dict[str, Any]:
    """Closed loop, maximum throughput: wrk -t1 -cC -dDs."""
    lua.write_text(WRK_LUA.replace("@BODY@", endpoint.body.decode()))
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "-s",
        str(lua),
        endpoint.url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    line = next((x for x in result.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if result.returncode != 0 or line is None:
        raise Broken(f"wrk failed:\n{result.stdout}\n{result.stderr}")
    raw = json.loads(line.removeprefix("WRK_JSON "))
    errors = sum(int(raw[k]) for k in ("connect", "read", "write", "status", "timeout"))
    seconds = raw["duration_us"] / 1e6
    return {
        "rps": (raw["requests"] - errors) / seconds,
        "requests": int(raw["requests"]),
        "errors": errors,
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "raw": raw,
    }


def run_vegeta(
    vegeta: str, endpoint: Endpoint, rate: int, duration: float, work: Path
) -> dict[str, Any]:
    """Open loop at a constant rate: vegeta attack | vegeta report -type=json."""
    results = work / "vegeta.bin"
    vegeta_attack(vegeta, endpoint, rate, duration, results)
    return vegeta_report(vegeta, [results])


def vegeta_attack(
    vegeta: str, endpoint: Endpoint, rate: int, duration: float, results: Path
) -> None:
    body = results.with_suffix(".body.json")
    body.write_bytes(endpoint.body)
    attack = subprocess.run(
        [
            vegeta,
            "attack",
            f"-rate={rate}",
            f"-duration={duration:g}s",
            f"-body={body}",
            "-header=Content-Type: application/json",
            "-timeout=10s",
            f"-output={results}",
        ],
        input=f"POST {endpoint.url}\n",
        capture_output=True,
        text=True,
        check=False,
    )
    if attack.returncode != 0:
        raise Broken(f"vegeta attack failed:\n{attack.stderr}")


def vegeta_report(vegeta: str, results: Sequence[Path]) -> dict[str, Any]:
    """The figures of one or more attacks' results, pooled (exact percentiles)."""
    report = subprocess.run(
        [vegeta, "report", "-type=json", *map(str, results)],
        capture_output=True,
        text=True,
        check=True,
    )
    raw = json.loads(report.stdout)
    latencies = raw["latencies"]
    return {
        "rate": float(raw["rate"]),  # requests sent per second
        "throughput": float(raw["throughput"]),  # successful answers per second
        "success": float(raw["success"]),
        "requests": int(raw["requests"]),
        "status_codes": raw.get("status_codes", {}),
        "errors": list(raw.get("errors") or [])[:5],
        "p50_ms": latencies["50th"] / 1e6,
        "p90_ms": latencies["90th"] / 1e6,
        "p99_ms": latencies["99th"] / 1e6,
        "max_ms": latencies["max"] / 1e6,
    }


# -- the runs ------------------------------------------------------------------------------


@dataclass
class Context:
    args: argparse.Namespace
    tmp: Path
    logs: Path
    vegeta: str
    model: Model
    mlform_command: list[str] | None
    mlflow_model: Path | None
    predictions: dict[str, int] = field(default_factory=dict)


def make_server(ctx: Context, name: str, workers: int, tag: str) -> Server:
    if name == "floor":
        server = floor_server(ctx.tmp, ctx.logs, tag)
        server.endpoint.body = v2_body(ctx.model)
        return server
    if name == "mlform":
        assert ctx.mlform_command is not None
        return mlform_server(ctx.mlform_command, ctx.model, workers, ctx.logs, tag)
    assert ctx.mlflow_model is not None
    return mlflow_server(
        ctx.mlflow_model, ctx.model, workers, ctx.logs, tag, ctx.args.mlflow_format
    )


def check_answer(ctx: Context, server: Server) -> None:
    got = predicted_class(server)
    ctx.predictions[server.name] = got
    if got != ctx.model.expected:
        raise Broken(
            f"{server.name} predicted class {got} for the row, the estimator {ctx.model.expected}"
        )


def measure_server(ctx: Context, name: str, workers: int, repeat: int) -> dict[str, Any]:
    args = ctx.args
    server = make_server(ctx, name, workers, f"w{workers}-r{repeat}")
    lua = ctx.tmp / "post.lua"
    began = time.perf_counter()
    with running([server], ctx.tmp):
        startup_s = time.perf_counter() - began
        if name != "floor":
            check_answer(ctx, server)
        run_wrk(server.endpoint, WARMUP_S, args.connections, lua)  # warm-up
        load_before = settle(args.settle)
        wrk = run_wrk(server.endpoint, args.duration, args.connections, lua)
        time.sleep(1.0)
        load_constant = settle(args.settle)
        constant = run_vegeta(ctx.vegeta, server.endpoint, CONSTANT_RATE, args.duration, ctx.tmp)
    return {
        "server": name,
        "workers": workers,
        "repeat": repeat,
        "startup_s": startup_s,
        "load_before": load_before,
        "load_constant": load_constant,
        "wrk": wrk,
        "constant": constant,
    }


def measure_router(ctx: Context, workers: int, repeat: int) -> list[dict[str, Any]]:
    """The same mlform server directly and through the router at each rate, alternating
    every ``ROUTER_SLICE_S`` seconds (so that both paths see the same machine), each path's
    slices pooled into one set of percentiles."""
    tag = f"router-w{workers}-r{repeat}"
    upstream = make_server(ctx, "mlform", workers, tag)
    router = router_server(upstream, ctx.tmp, ctx.logs, tag)
    out: list[dict[str, Any]] = []
    with running([upstream, router], ctx.tmp):
        check_answer(ctx, upstream)
        routed = predicted_class(router)
        if routed != ctx.model.expected:
            raise Broken(f"through the router the class is {routed}, not {ctx.model.expected}")
        lua = ctx.tmp / "post.lua"
        for endpoint in (upstream.endpoint, router.endpoint):
            run_wrk(endpoint, WARMUP_S, ctx.args.connections, lua)
        slices = max(1, round(ctx.args.duration / ROUTER_SLICE_S))
        span = ctx.args.duration / slices
        for index, rate in enumerate(ROUTER_RATES):
            time.sleep(1.0)
            load = settle(ctx.args.settle)
            files: dict[str, list[Path]] = {"direct": [], "router": []}
            for piece in range(slices):
                paths = [("direct", upstream.endpoint), ("router", router.endpoint)]
                if (repeat + index + piece) % 2:
                    paths.reverse()
                for path, endpoint in paths:
                    results = ctx.tmp / f"vegeta-{path}-{rate}-{piece}.bin"
                    vegeta_attack(ctx.vegeta, endpoint, rate, span, results)
                    files[path].append(results)
            for path, pieces in files.items():
                result = vegeta_report(ctx.vegeta, pieces)
                result["rate"] = result["requests"] / (span * slices)  # the gaps excluded
                result["throughput"] = result["rate"] * result["success"]
                out.append(
                    {**result, "path": path, "target_rate": rate, "repeat": repeat, "load": load}
                )
    return out


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(runs: list[dict[str, Any]], router_runs: list[dict[str, Any]]) -> dict[str, Any]:
    servers: dict[str, dict[str, Any]] = {}
    for run in runs:
        key = f"{run['server']}/w{run['workers']}"
        servers.setdefault(key, {"server": run["server"], "workers": run["workers"], "runs": []})
        servers[key]["runs"].append(run)
    for entry in servers.values():
        rs = entry.pop("runs")
        entry["repeats"] = len(rs)
        entry["rps"] = median([r["wrk"]["rps"] for r in rs])
        entry["rps_runs"] = [round(r["wrk"]["rps"], 1) for r in rs]
        entry["wrk_errors"] = sum(r["wrk"]["errors"] for r in rs)
        for q in ("p50_ms", "p99_ms"):
            entry[f"wrk_{q}"] = median([r["wrk"][q] for r in rs])
            entry[f"c500_{q}"] = median([r["constant"][q] for r in rs])
        entry["c500_p99_runs"] = [round(r["constant"]["p99_ms"], 2) for r in rs]
        entry["c500_success"] = median([r["constant"]["success"] for r in rs])
        entry["c500_success_min"] = min(r["constant"]["success"] for r in rs)
        entry["c500_throughput"] = median([r["constant"]["throughput"] for r in rs])
        entry["c500_errors"] = sorted({e for r in rs for e in r["constant"]["errors"]})[:5]
        entry["startup_s"] = median([r["startup_s"] for r in rs])
    router: dict[str, dict[str, Any]] = {}
    for rate in sorted({r["target_rate"] for r in router_runs}):
        row: dict[str, Any] = {"rate": rate}
        for path in ("direct", "router"):
            rs = [r for r in router_runs if r["target_rate"] == rate and r["path"] == path]
            row[f"{path}_p50_ms"] = median([r["p50_ms"] for r in rs])
            row[f"{path}_p99_ms"] = median([r["p99_ms"] for r in rs])
            row[f"{path}_p50_runs"] = [round(r["p50_ms"], 3) for r in rs]
            row[f"{path}_success"] = min((r["success"] for r in rs), default=float("nan"))
        row["added_p50_ms"] = row["router_p50_ms"] - row["direct_p50_ms"]
        row["added_p50_runs"] = [
            round(r - d, 3)
            for d, r in zip(row["direct_p50_runs"], row["router_p50_runs"], strict=True)
        ]
        router[str(rate)] = row
    return {"servers": servers, "router": router}


def sustained(entry: dict[str, Any]) -> bool:
    """Whether every request of the constant-rate runs succeeded, at the rate asked."""
    return bool(
        entry["c500_success_min"] >= 0.999 and entry["c500_throughput"] >= 0.98 * CONSTANT_RATE
    )


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(summary: dict[str, Any], workers: list[int], names: list[str]) -> list[str]:
    """Print the table and the targets; returns the target lines."""
    servers = summary["servers"]
    head = (
        f"{'server':8s} {'workers':>7s} {'RPS (wrk)':>10s} {'p50 ms':>8s} {'p99 ms':>8s} "
        f"{'errors':>6s} | {'500/s p50':>9s} {'p99 ms':>8s} {'success':>8s} {'ok/s':>7s} "
        f"| {'mlform/mlflow RPS':>17s}"
    )
    print(head)
    print("-" * len(head))
    for w in workers:
        for name in names:
            e = servers.get(f"{name}/w{w}")
            if e is None:
                continue
            other = servers.get(f"mlflow/w{w}")
            ratio = ""
            if name == "mlform" and other:
                ratio = f"{e['rps'] / other['rps']:.2f}×"
            print(
                f"{name:8s} {w:7d} {e['rps']:10.0f} {e['wrk_p50_ms']:8.2f} {e['wrk_p99_ms']:8.2f} "
                f"{e['wrk_errors']:6d} | {e['c500_p50_ms']:9.2f} {e['c500_p99_ms']:8.2f} "
                f"{e['c500_success'] * 100:7.1f}% {e['c500_throughput']:7.0f} | {ratio:>17s}"
            )
    floor = servers.get("floor/w1")
    if floor:
        print(
            f"{'floor':8s} {1:7d} {floor['rps']:10.0f} {floor['wrk_p50_ms']:8.2f} "
            f"{floor['wrk_p99_ms']:8.2f} {floor['wrk_errors']:6d} | {floor['c500_p50_ms']:9.2f} "
            f"{floor['c500_p99_ms']:8.2f} {floor['c500_success'] * 100:7.1f}% "
            f"{floor['c500_throughput']:7.0f} |"
        )
        print("  floor: aiohttp reading the body and sending a constant answer (no model)")
    for e in servers.values():
        if e["c500_errors"]:
            print(f"  {e['server']} w{e['workers']} errors at 500/s: {e['c500_errors']}")
    lines: list[str] = []
    if summary["router"]:
        print()
        print(
            f"{'router':8s} {'rate/s':>7s} {'p50 direct':>11s} {'p50 routed':>11s} "
            f"{'added p50':>10s} {'p99 direct':>11s} {'p99 routed':>11s}  added p50 per repeat"
        )
        for row in summary["router"].values():
            print(
                f"{'mlform':8s} {row['rate']:7d} {row['direct_p50_ms']:9.3f}ms "
                f"{row['router_p50_ms']:9.3f}ms {row['added_p50_ms']:8.3f}ms "
                f"{row['direct_p99_ms']:9.2f}ms {row['router_p99_ms']:9.2f}ms  "
                + ", ".join(f"{v:+.2f}" for v in row["added_p50_runs"])
            )
    for w in workers:
        mine, theirs = servers.get(f"mlform/w{w}"), servers.get(f"mlflow/w{w}")
        if mine and theirs:
            ratio = mine["rps"] / theirs["rps"]
            lines.append(
                f"{verdict(ratio >= 2)}  throughput, {w} worker(s): mlform {mine['rps']:.0f} rps "
                f"vs MLflow {theirs['rps']:.0f} rps = {ratio:.2f}× (target >= 2×)"
            )
    for w in workers:
        mine = servers.get(f"mlform/w{w}")
        if mine:
            ok = mine["c500_p99_ms"] <= 10 and sustained(mine)
            lines.append(
                f"{verdict(ok)}  p99 at {CONSTANT_RATE} rps, {w} worker(s): mlform "
                f"{mine['c500_p99_ms']:.2f} ms, success {mine['c500_success_min'] * 100:.1f}% "
                "(target <= 10 ms)"
            )
        theirs = servers.get(f"mlflow/w{w}")
        if theirs:
            text = (
                f"      MLflow p99 at {CONSTANT_RATE} rps, {w} worker(s): "
                f"{theirs['c500_p99_ms']:.2f} ms, success {theirs['c500_success'] * 100:.1f}% "
                f"(median), {theirs['c500_throughput']:.0f} ok/s"
            )
            if theirs["c500_success_min"] < 0.999:
                text += (
                    f" -- cannot sustain {CONSTANT_RATE} rps: requests queue until vegeta's "
                    "10 s timeout, so the p99 is that timeout"
                )
            elif not sustained(theirs):
                text += f" -- falls behind {CONSTANT_RATE} rps: answers queue"
            lines.append(text)
    for row in summary["router"].values():
        lines.append(
            f"{verdict(row['added_p50_ms'] <= 1)}  router at {row['rate']} rps: p50 "
            f"{row['direct_p50_ms']:.3f} ms direct, {row['router_p50_ms']:.3f} ms routed, "
            f"+{row['added_p50_ms']:.3f} ms (target <= 1 ms)"
        )
    print()
    for line in lines:
        print(line)
    return lines


def _shown(command: list[str] | None) -> str:
    if not command:
        return "-"
    return " ".join("python" if part == sys.executable else part for part in command)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="fresh-process runs per figure")
    parser.add_argument("--model", choices=sorted(ESTIMATORS), default="logreg")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    parser.add_argument(
        "--mlflow-format",
        choices=["inputs", "dataframe_split"],
        default="inputs",
        help="MLflow request body: a tensor ({'inputs': [[...]]}) or a one-row data frame",
    )
    parser.add_argument(
        "--servers", default="mlform,mlflow", help="which servers to measure (mlform,mlflow)"
    )
    parser.add_argument(
        "--mlform-command",
        help="command that runs mlform's server, before its arguments (default: "
        "`python -m mlform serve`, else `python -m mlform.cli.serve_cmd serve`)",
    )
    parser.add_argument("--no-router", action="store_true", help="skip the router runs")
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the floor (aiohttp, constant answer)"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=0.0,
        metavar="PCT",
        help="before each measurement wait (up to 90 s) for the CPU pressure (Linux PSI "
        "avg10) to fall below PCT %% (default 0: do not wait)",
    )
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    parser.add_argument("--setup", action="store_true", help="create the MLflow venv if missing")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    names = [n for n in ("mlform", "mlflow") if n in args.servers.split(",")]
    want_mlform, want_mlflow = "mlform" in names, "mlflow" in names
    custom = shlex.split(args.mlform_command) if args.mlform_command else None
    vegeta = check_tools(want_mlform and custom is None, want_mlflow, args.setup)
    versions = tool_versions(vegeta, want_mlflow)
    mlform_command = custom or (mlform_server_command(sys.executable) if want_mlform else None)
    tmp = Path(tempfile.mkdtemp(prefix="mlform-bench-serving-"))
    logs = tmp / "logs"
    logs.mkdir()
    load_start = machine_load()
    try:
        model = build_model(tmp, args.model)
        mlflow_model = None
        if want_mlflow:
            mlflow_model = tmp / "mlflow-model"
            save_mlflow_model(model, mlflow_model)
        ctx = Context(args, tmp, logs, vegeta, model, mlform_command, mlflow_model)
        print(
            f"model: {args.model} ({model.ref}, test accuracy {model.accuracy:.3f}); "
            f"cpus: {os.cpu_count()}; machine at start: {_load_text(load_start)}"
        )
        print(
            f"mlform server: {_shown(mlform_command)}; "
            f"MLflow request format: {args.mlflow_format}; duration {args.duration:g} s, "
            f"wrk -t1 -c{args.connections}, vegeta {CONSTANT_RATE}/s, repeats {args.repeats}"
        )
        print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()), flush=True)
        runs: list[dict[str, Any]] = []
        router_runs: list[dict[str, Any]] = []
        for repeat in range(args.repeats):
            if not args.no_floor:
                run = measure_server(ctx, "floor", 1, repeat)
                runs.append(run)
                print(
                    f"  [{repeat + 1}/{args.repeats}] floor: {run['wrk']['rps']:.0f} rps (wrk), "
                    f"500/s p50 {run['constant']['p50_ms']:.2f} ms "
                    f"p99 {run['constant']['p99_ms']:.2f} ms "
                    f"({_load_text(run['load_constant'])})",
                    flush=True,
                )
            for w in workers:
                order = names if repeat % 2 == 0 else list(reversed(names))
                for name in order:
                    run = measure_server(ctx, name, w, repeat)
                    runs.append(run)
                    print(
                        f"  [{repeat + 1}/{args.repeats}] {name} w{w}: "
                        f"{run['wrk']['rps']:.0f} rps (wrk, {run['wrk']['errors']} errors), "
                        f"500/s p50 {run['constant']['p50_ms']:.2f} ms "
                        f"p99 {run['constant']['p99_ms']:.2f} ms "
                        f"success {run['constant']['success'] * 100:.1f}% "
                        f"({_load_text(run['load_constant'])})",
                        flush=True,
                    )
            if want_mlform and not args.no_router:
                for result in measure_router(ctx, workers[0], repeat):
                    router_runs.append(result)
                    print(
                        f"  [{repeat + 1}/{args.repeats}] {result['path']} "
                        f"{result['target_rate']}/s: p50 {result['p50_ms']:.3f} ms "
                        f"p99 {result['p99_ms']:.2f} ms "
                        f"success {result['success'] * 100:.1f}% ({_load_text(result['load'])})",
                        flush=True,
                    )
        load_end = machine_load()
        print()
        summary = summarize(runs, router_runs)
        targets = report(summary, workers, names)
        print(f"machine at end: {_load_text(load_end)}")
        if args.json:
            document = {
                "model": args.model,
                "ref": model.ref,
                "row_class": model.expected,
                "predictions": ctx.predictions,
                "mlflow_format": args.mlflow_format,
                "mlform_command": mlform_command,
                "duration_s": args.duration,
                "connections": args.connections,
                "repeats": args.repeats,
                "cpu_count": os.cpu_count(),
                "load_start": load_start,
                "load_end": load_end,
                "versions": versions,
                "summary": summary,
                "targets": targets,
                "runs": runs,
                "router_runs": router_runs,
            }
            args.json.write_text(json.dumps(document, indent=2) + "\n")
    except Broken as exc:
        print(f"benchmark broke: {exc}", file=sys.stderr)
        print(f"logs kept in {logs}", file=sys.stderr)
        args.keep = True
        return 1
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
