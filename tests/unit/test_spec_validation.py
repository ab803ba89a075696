"""The spec: the example validates; every class of mistake becomes a precise diagnostic."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlform.addresses import Address, Kind
from mlform.config import compose_system
from mlform.diagnostics import Diagnostic
from mlform.errors import ConfigError
from mlform.spec import LoadedSystem, load_system, load_system_from, validate_spec

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("proj")
    for part in ("configs", "stacks"):
        shutil.copytree(REPO / part, root / part)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFORM_SECRET_ALERT_TOKEN", "tok")
        patch.setenv("MLFORM_SECRET_KEY", "unit-test-key")
        yield root


@pytest.fixture(scope="module")
def example(project: Path) -> tuple[dict[str, Any], dict[str, tuple[str, int | None]]]:
    composed = compose_system(project, "dev", [])
    return composed.data, composed.provenance


def problems(
    example: tuple[dict[str, Any], dict[str, tuple[str, int | None]]], edit: Any
) -> list[Diagnostic]:
    data = copy.deepcopy(example[0])
    edit(data)
    spec, found = validate_spec(data, example[1])
    assert spec is None
    assert found
    return found


def only(found: list[Diagnostic], key: str) -> Diagnostic:
    matching = [d for d in found if d.key == key]
    assert len(matching) == 1, [str(d) for d in found]
    return matching[0]


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_example_validates_for_every_stack(project: Path, stack: str) -> None:
    loaded = load_system_from(project, stack, [])
    assert isinstance(loaded, LoadedSystem)
    assert loaded.project == "diagnosis"
    assert loaded.stack == stack
    assert [str(o.address) for o in loaded.objects] == [
        "data.tumors",
        "data.patients",
        "features.diagnosis",
        "model.diagnosis",
        "model.diagnosis_torch",
        "deployment.diagnosis-api",
        "monitor.diagnosis-drift",
        "monitor.diagnosis-latency",
    ]
    assert not [w for w in loaded.warnings if w.severity == "error"]


def test_declared_objects(project: Path) -> None:
    loaded = load_system_from(project, "prod", ["models.diagnosis.estimator.max_depth=6"])
    objects = {str(o.address): o for o in loaded.objects}
    model = objects["model.diagnosis"]
    assert model.key == "models.diagnosis"
    assert model.source_file == "configs/models/diagnosis.yaml"
    assert model.depends_on == (Address(Kind.FEATURES, "diagnosis"),)
    assert model.config["estimator"]["_target_"] == "ml.pipelines.make_forest"
    assert model.config["estimator"]["max_depth"] == 6
    assert model.config["resources"] == {
        "profile": "cpu-small",
        "cpu": 1,
        "memory": "2Gi",
        "gpu": None,
        "node_selector": {},
        "tolerations": [],
    }
    assert model.code_targets == ("ml.pipelines.make_forest",)
    torch_model = objects["model.diagnosis_torch"]
    assert torch_model.code_targets == ("mlform.torch.mlp.MLP", "torch.optim.AdamW")
    assert torch_model.config["resources"]["gpu"] == {"count": 1, "type": "nvidia-a100"}
    assert objects["features.diagnosis"].depends_on == (
        Address(Kind.DATA, "tumors"),
        Address(Kind.DATA, "patients"),
    )
    assert objects["deployment.diagnosis-api"].depends_on == (Address(Kind.MODEL, "diagnosis"),)
    assert objects["monitor.diagnosis-drift"].depends_on == (
        Address(Kind.DEPLOYMENT, "diagnosis-api"),
    )
    assert objects["data.patients"].config["schema"]["columns"]["email"]["pii"] is True
    assert set(loaded.settings) == {"project", "resources", "policies", "target", "backend"}
    assert loaded.settings["target"]["namespace"] == "diagnosis-prod"
    assert loaded.provenance["deployments.diagnosis-api.replicas"] == ("stacks/prod.yaml", 5)


def test_defaults_are_filled_in(project: Path) -> None:
    loaded = load_system_from(
        project,
        "dev",
        [
            "~deployments.diagnosis-api.strategy",
            "+deployments.diagnosis-api.strategy={type: canary}",
            "monitors.diagnosis-drift.method=psi",
        ],
    )
    objects = {str(o.address): o.config for o in loaded.objects}
    strategy = objects["deployment.diagnosis-api"]["strategy"]
    assert [s["weight"] for s in strategy["steps"]] == [10, 25, 50, 100]
    assert strategy["analysis"]["interval"] == "60s"
    assert strategy["analysis"]["failure_limit"] == 2
    assert strategy["progress_deadline"] == "600s"
    assert {m["name"]: m["threshold"] for m in strategy["analysis"]["metrics"]} == {
        "success_rate": ">= 0.99",
        "latency_p99_ms": "<= 500",
    }
    assert objects["monitor.diagnosis-drift"]["threshold"] == 0.1
    assert objects["monitor.diagnosis-drift"]["bins"] == 30
    assert objects["data.patients"]["format"] == "csv"
    torch_trainer = objects["model.diagnosis_torch"]["trainer"]
    assert torch_trainer["checkpoint_every"] is None
    assert torch_trainer["early_stopping"]["min_delta"] == 0.0


def test_blue_green_default_scale_down(project: Path) -> None:
    loaded = load_system_from(
        project,
        "dev",
        [
            "~deployments.diagnosis-api.strategy",
            "+deployments.diagnosis-api.strategy={type: blue_green}",
        ],
    )
    config = next(o.config for o in loaded.objects if o.key == "deployments.diagnosis-api")
    assert config["strategy"]["scale_down_delay"] == "30s"
    assert config["strategy"]["auto_promote"] is False


def test_unknown_key_with_suggestion_and_location(example: Any) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["models"]["diagnosis_torch"]["trainer"]["epoch"] = 3

    diag = only(problems(example, edit), "models.diagnosis_torch.trainer.epoch")
    assert diag.summary == "unknown key models.diagnosis_torch.trainer.epoch"
    assert "Did you mean 'epochs'?" in diag.detail
    assert "batch_size" in diag.detail  # the valid keys are listed
    assert diag.address == "model.diagnosis_torch"
    assert (diag.file, diag.line) == ("stacks/dev.yaml", 8)  # last source of the trainer


def test_wrong_type_names_file_and_line(example: Any) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["models"]["diagnosis_torch"]["trainer"]["epochs"] = "many"

    diag = only(problems(example, edit), "models.diagnosis_torch.trainer.epochs")
    assert "valid integer" in diag.detail
    assert "'many'" in diag.detail
    assert (diag.file, diag.line) == ("stacks/dev.yaml", 9)


def test_bad_enum_lists_choices(example: Any) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["models"]["diagnosis_torch"]["trainer"]["precision"] = "bf61"

    diag = only(problems(example, edit), "models.diagnosis_torch.trainer.precision")
    assert "fp32, bf16, fp16" in diag.detail
    assert "Did you mean 'bf16'?" in diag.detail
    assert diag.line == 18


def test_bad_discriminator(example: Any) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["deployments"]["diagnosis-api"]["strategy"]["type"] = "canery"

    diag = only(problems(example, edit), "deployments.diagnosis-api.strategy.type")
    assert "recreate, rolling, canary, blue_green, ab_test, shadow" in diag.detail
    assert "Did you mean 'canary'?" in diag.detail


def test_missing_required_key(example: Any) -> None:
    def edit(d: dict[str, Any]) -> None:
        del d["models"]["diagnosis"]["estimator"]

    diag = only(problems(example, edit), "models.diagnosis.estimator")
    assert diag.summary == "missing required key models.diagnosis.estimator"
    assert diag.file == "stacks/dev.yaml"  # the last source that set models.diagnosis


def test_invalid_object_name(example: Any) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["data"]["bad name!"] = d["data"]["tumors"]

    diag = only(problems(example, edit), "data.bad name!")
    assert "invalid name" in diag.summary
    assert "letters, digits" in diag.detail


@pytest.mark.parametrize(
    ("path", "value", "needle"),
    [
        (("deployments", "diagnosis-api", "strategy", "steps", 0, "pause"), "1 minute", "duration"),
        (("models", "diagnosis", "gates", "roc_auc"), "at least 0.9", "comparison"),
        (("resources", "profiles", "cpu-small", "memory"), "2 gigs", "memory quantity"),
        (
            ("deployments", "diagnosis-api", "strategy", "steps", 3, "weight"),
            90,
            "reach weight 100",
        ),
        (("deployments", "diagnosis-api", "port"), 70000, "less than or equal to 65535"),
        (("policies", "exemptions", 0, "address"), "models.x", "unknown kind"),
        (("features", "diagnosis", "split", "test_size"), 1.5, "less than 1"),
        (("data", "patients", "schema", "columns", "sex", "type"), "enum", "category"),
    ],
)
def test_value_constraints(example: Any, path: tuple[Any, ...], value: Any, needle: str) -> None:
    def edit(d: dict[str, Any]) -> None:
        node = d
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
        if path[-1] == "test_size":
            node["validation_size"] = 0.0

    found = problems(example, edit)
    text = "\n".join(str(d) for d in found)
    assert needle in text, text
    assert all(d.key and d.key.startswith(".".join(str(p) for p in path[:2])) for d in found)


def test_all_problems_are_reported_together(example: Any) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["models"]["diagnosis"]["task"] = "ranking"
        d["deployments"]["diagnosis-api"]["replicas"] = -1
        d["monitors"]["diagnosis-drift"]["on_breach"] = "panic"

    keys = {d.key for d in problems(example, edit)}
    assert keys == {
        "models.diagnosis.task",
        "deployments.diagnosis-api.replicas",
        "monitors.diagnosis-drift.on_breach",
    }


def test_load_system_raises_config_error(project: Path) -> None:
    composed = compose_system(project, "dev", ["deployments.diagnosis-api.replicas=many"])
    with pytest.raises(ConfigError) as info:
        load_system(composed, project)
    diag = info.value.diagnostics[0]
    assert diag.key == "deployments.diagnosis-api.replicas"
    assert diag.file == "<command line>"


def test_non_mapping_config() -> None:
    spec, found = validate_spec(["not", "a", "mapping"])  # type: ignore[arg-type]
    assert spec is None
    assert "not a mapping" in found[0].summary
