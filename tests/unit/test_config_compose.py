"""compose_system: Hydra composition of configs/ + stack overlay + overrides, with provenance."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from mlform.config import ComposedConfig, available_stacks, compose_system
from mlform.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for part in ("configs", "stacks"):
        shutil.copytree(REPO / part, tmp_path / part)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "patients.csv").write_text("sample_id\n0\n")
    monkeypatch.setenv("MLFORM_SECRET_ALERT_TOKEN", "token-value-1")
    monkeypatch.delenv("ALERT_WEBHOOK_URL", raising=False)
    return tmp_path


def compose_error(project: Path, stack: str | None, overrides: list[str]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        compose_system(project, stack, overrides)
    assert info.value.diagnostics, "a ConfigError always carries diagnostics"
    return info.value


@pytest.mark.parametrize("stack", ["dev", "staging", "prod", None])
def test_every_stack_composes_to_plain_data(project: Path, stack: str | None) -> None:
    composed = compose_system(project, stack, [])
    assert isinstance(composed, ComposedConfig)
    assert composed.stack == (stack or "default")
    assert set(composed.data) >= {"project", "data", "features", "models", "deployments"}
    assert composed.data["deployments"]["diagnosis-api"]["model"] == "diagnosis"
    assert composed.files[0] == "configs/data/tumors.yaml"
    assert "configs/system.yaml" in composed.files
    if stack is not None:
        assert composed.files[-1] == f"stacks/{stack}.yaml"
    assert not GlobalHydra.instance().is_initialized()


def test_stack_overlay_wins_over_configs(project: Path) -> None:
    dev = compose_system(project, "dev", [])
    prod = compose_system(project, "prod", [])
    assert dev.data["deployments"]["diagnosis-api"]["replicas"] == 1
    assert dev.data["deployments"]["diagnosis-api"]["autoscaling"] is None
    assert dev.data["models"]["diagnosis"]["estimator"]["n_estimators"] == 100
    assert prod.data["deployments"]["diagnosis-api"]["replicas"] == 3
    assert prod.data["target"] == {
        "type": "kubernetes",
        "context": "prod-cluster",
        "namespace": "diagnosis-prod",
    }
    # the prod overlay merges into the autoscaling block instead of replacing it
    assert prod.data["deployments"]["diagnosis-api"]["autoscaling"]["target_cpu_utilization"] == 70


def test_overrides_change_add_and_delete(project: Path) -> None:
    composed = compose_system(
        project,
        "dev",
        [
            "models.diagnosis.estimator.max_depth=6",
            "+models.diagnosis.description=tuned",
            "~monitors.diagnosis-latency",
        ],
    )
    assert composed.data["models"]["diagnosis"]["estimator"]["max_depth"] == 6
    assert composed.data["models"]["diagnosis"]["description"] == "tuned"
    assert "diagnosis-latency" not in composed.data["monitors"]
    assert composed.overrides == (
        "models.diagnosis.estimator.max_depth=6",
        "+models.diagnosis.description=tuned",
        "~monitors.diagnosis-latency",
    )


def test_provenance_points_at_the_last_source(project: Path) -> None:
    prov = compose_system(project, "prod", ["models.diagnosis.estimator.max_depth=6"]).provenance
    assert prov["deployments.diagnosis-api.replicas"] == ("stacks/prod.yaml", 5)
    assert prov["deployments.diagnosis-api.model"] == ("configs/deployments/diagnosis_api.yaml", 1)
    assert prov["models.diagnosis.estimator.n_estimators"] == ("configs/models/diagnosis.yaml", 6)
    assert prov["models.diagnosis.estimator.max_depth"] == ("<command line>", None)
    assert prov["models.diagnosis"] == ("configs/models/diagnosis.yaml", 1)
    assert prov["project.name"] == ("configs/system.yaml", 17)
    assert prov["deployments.diagnosis-api.strategy.steps.1.weight"] == (
        "configs/deployments/diagnosis_api.yaml",
        13,
    )
    # a list replaced by the overlay: its items come from the overlay only
    assert prov["monitors.diagnosis-drift.alerts.1.url"] == ("stacks/prod.yaml", 14)
    assert prov["monitors.diagnosis-drift.alerts"] == ("stacks/prod.yaml", 11)


def test_provenance_covers_exactly_the_composed_keys(project: Path) -> None:
    composed = compose_system(project, "dev", ["~deployments.diagnosis-api.strategy"])
    prov = composed.provenance
    assert "deployments.diagnosis-api.strategy" not in prov
    assert "deployments.diagnosis-api.strategy.type" not in prov
    # dev sets autoscaling to null: the subtree from the base file is gone
    assert prov["deployments.diagnosis-api.autoscaling"] == ("stacks/dev.yaml", 13)
    assert "deployments.diagnosis-api.autoscaling.min_replicas" not in prov
    assert "resources.profiles.gpu-a100.tolerations.0.effect" in prov


def test_env_resolver_with_and_without_default(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prod = compose_system(project, "prod", [])
    alerts = prod.data["monitors"]["diagnosis-drift"]["alerts"]
    assert alerts[1]["url"] == "https://alerts.example.org/hooks/ml"
    monkeypatch.setenv("ALERT_WEBHOOK_URL", "https://hooks.test/x")
    monkeypatch.setenv("MY_TEAM", "vision")
    composed = compose_system(project, "prod", ["project.team=${env:MY_TEAM}"])
    assert composed.data["monitors"]["diagnosis-drift"]["alerts"][1]["url"] == (
        "https://hooks.test/x"
    )
    assert composed.data["project"]["team"] == "vision"


def test_file_hash_resolver(project: Path) -> None:
    import hashlib

    expected = "sha256:" + hashlib.sha256(b"sample_id\n0\n").hexdigest()
    composed = compose_system(
        project, None, ["+data.patients.labels={digest: '${file_hash:data/patients.csv}'}"]
    )
    assert composed.data["data"]["patients"]["labels"]["digest"] == expected


def test_resolvers_are_registered_only_during_compose(project: Path) -> None:
    compose_system(project, "dev", [])
    for name in ("env", "file_hash", "secret"):
        assert not OmegaConf.has_resolver(name)


def test_resolver_registered_by_someone_else_survives(project: Path) -> None:
    OmegaConf.register_new_resolver("env", lambda name: f"theirs:{name}")
    try:
        composed = compose_system(project, "dev", ["project.team=${env:ZZ_UNSET,fallback}"])
        assert composed.data["project"]["team"] == "fallback"
        assert OmegaConf.create({"x": "${env:A}"}).x == "theirs:A"
    finally:
        OmegaConf.clear_resolver("env")


def test_available_stacks(project: Path) -> None:
    assert available_stacks(project) == ["dev", "prod", "staging"]


# -- failures ------------------------------------------------------------------------


def test_missing_configs_dir(tmp_path: Path) -> None:
    error = compose_error(tmp_path, None, [])
    assert "no configs/ directory" in error.diagnostics[0].summary


def test_missing_system_yaml(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    error = compose_error(tmp_path, None, [])
    assert error.diagnostics[0].file == "configs/system.yaml"


def test_unknown_stack_lists_the_available_ones(project: Path) -> None:
    error = compose_error(project, "prd", [])
    diag = error.diagnostics[0]
    assert diag.summary == "unknown stack 'prd'"
    assert "dev, prod, staging" in diag.detail
    assert "Did you mean 'prod'?" in diag.detail


def test_stack_name_cannot_escape_the_stacks_dir(project: Path) -> None:
    error = compose_error(project, "../configs/system", [])
    assert "unknown stack" in error.diagnostics[0].summary


@pytest.mark.parametrize(
    ("rel", "text", "line"),
    [
        ("configs/models/diagnosis.yaml", "framework: sklearn\ntask: [unclosed\n", 3),
        ("configs/system.yaml", "defaults:\n  - _self_\nproject:\n name: x\n  team: y\n", 5),
        ("stacks/dev.yaml", "# @package _global_\nmodels:\n  a: 'open\n", 4),
    ],
)
def test_malformed_yaml_names_file_and_line(project: Path, rel: str, text: str, line: int) -> None:
    (project / rel).write_text(text)
    diag = compose_error(project, "dev", []).diagnostics[0]
    assert diag.file == rel
    assert diag.line == line
    assert "malformed YAML" in diag.summary


def test_bad_override_syntax(project: Path) -> None:
    diag = compose_error(project, "dev", ["models.diagnosis.estimator.max_depth=="]).diagnostics[0]
    assert diag.summary == "invalid command-line override"
    assert diag.file == "<command line>"
    assert "+key.path=value" in diag.detail


def test_override_of_unknown_key_suggests_the_closest(project: Path) -> None:
    diag = compose_error(project, "dev", ["deployments.diagnosis-api.replicass=3"]).diagnostics[0]
    assert diag.key == "deployments.diagnosis-api.replicass"
    assert "Did you mean 'replicas'?" in diag.detail
    assert "+deployments.diagnosis-api.replicass=" in diag.detail
    assert diag.address == "deployment.diagnosis-api"


def test_missing_env_var_without_default(project: Path) -> None:
    error = compose_error(
        project, "dev", ["project.team=${env:MLFORM_TEST_UNSET_VAR}", "project.owner=???"]
    )
    by_key = {d.key: d for d in error.diagnostics}
    assert "MLFORM_TEST_UNSET_VAR" in by_key["project.team"].summary
    assert by_key["project.team"].file == "<command line>"
    assert "project.owner" in by_key  # every problem is reported, not just the first


def test_unresolvable_interpolation_points_at_its_file(project: Path) -> None:
    path = project / "configs" / "models" / "diagnosis.yaml"
    path.write_text(path.read_text().replace("max_depth: 8", "max_depth: ${nowhere.depth}"))
    diag = compose_error(project, "dev", []).diagnostics[0]
    assert diag.key == "models.diagnosis.estimator.max_depth"
    assert (diag.file, diag.line) == ("configs/models/diagnosis.yaml", 7)
    assert "missing key" in diag.summary


def test_missing_defaults_entry(project: Path) -> None:
    (project / "configs" / "monitors" / "diagnosis_latency.yaml").unlink()
    diag = compose_error(project, "dev", []).diagnostics[0]
    assert "does not exist" in diag.summary
    assert "monitors/diagnosis_latency" in diag.detail


def test_missing_secret_names_key_and_both_ways_to_set_it(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFORM_SECRET_ALERT_TOKEN")
    monkeypatch.delenv("MLFORM_SECRETS_DIR", raising=False)
    diag = compose_error(project, "prod", []).diagnostics[0]
    assert diag.key == "monitors.diagnosis-drift.alerts.1.headers.Authorization"
    assert (diag.file, diag.line) == ("stacks/prod.yaml", 16)
    assert "MLFORM_SECRET_ALERT_TOKEN" in diag.detail
    assert "MLFORM_SECRETS_DIR" in diag.detail


@pytest.mark.parametrize(
    "overrides",
    [["x=="], ["deployments.nope.replicas=1"], ["project.name=${env:MLFORM_TEST_UNSET_VAR}"]],
)
def test_no_hydra_state_left_after_failure(project: Path, overrides: list[str]) -> None:
    compose_error(project, "dev", overrides)
    assert not GlobalHydra.instance().is_initialized()
    for name in ("env", "file_hash", "secret"):
        assert not OmegaConf.has_resolver(name)
    compose_system(project, "dev", [])  # and the next compose works


def test_compose_inside_an_initialized_hydra_restores_it(project: Path) -> None:
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(project / "configs"), version_base="1.3"):
        before = GlobalHydra.instance().hydra
        compose_system(project, "dev", [])
        assert GlobalHydra.instance().is_initialized()
        assert GlobalHydra.instance().hydra is before
    assert not GlobalHydra.instance().is_initialized()
