"""GitOps and CI: the example workflow lints clean, the pre-commit hooks point at real
commands, and a pull request simulated in a temporary git repository goes through
validate, policy check (SARIF, GitHub annotations), plan (markdown + saved plan) and,
after the merge, apply of the saved plan from another checkout (docs/gitops.md)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml
from example_project import REPO, copy_example, run_cli

pytestmark = pytest.mark.integration

EXAMPLES = REPO / "docs" / "examples"
WORKFLOW = EXAMPLES / "github-actions" / "mlform.yml"
ACTIONLINT_CONFIG = EXAMPLES / "github-actions" / "actionlint.yaml"
ACTIONLINT_VERSION = "1.7.12"
PATIENTS = "configs/data/patients.yaml"
# The prod stack references ${secret:alert_token}; any value will do (only a hash is kept).
PROD_ENV = {"MLFORM_SECRET_ALERT_TOKEN": "test-token"}
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


# -- the example workflow -------------------------------------------------------------------


def _actionlint() -> Path | None:
    cache = Path(os.environ.get("MLFORM_TOOLCHAIN_CACHE", Path.home() / ".cache" / "mlform"))
    built = cache / "actionlint" / f"v{ACTIONLINT_VERSION}" / "bin" / "actionlint"
    if built.is_file() and os.access(built, os.X_OK):
        return built
    found = shutil.which("actionlint")
    return Path(found) if found else None


def _workflow_files() -> list[Path]:
    """Every GitHub Actions workflow under docs/examples/ (YAML with `on` and `jobs`)."""
    found = []
    for path in sorted([*EXAMPLES.rglob("*.yml"), *EXAMPLES.rglob("*.yaml")]):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        # PyYAML reads the key `on` as the boolean True (YAML 1.1).
        if isinstance(doc, dict) and "jobs" in doc and (True in doc or "on" in doc):
            found.append(path)
    return found


def _load_workflow() -> dict[Any, Any]:
    doc = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def test_example_workflows_pass_actionlint(missing_tool: Callable[[str], NoReturn]) -> None:
    binary = _actionlint()
    if binary is None:
        missing_tool(
            f"actionlint v{ACTIONLINT_VERSION} is not built: run scripts/build-actionlint.sh "
            "(needs the Go toolchain)"
        )
    files = _workflow_files()
    assert WORKFLOW in files
    result = subprocess.run(
        [str(binary), "-no-color", "-config-file", str(ACTIONLINT_CONFIG), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_example_workflow_is_pinned_least_privileged_and_serialised_per_stack() -> None:
    doc = _load_workflow()
    triggers = doc[True] if True in doc else doc["on"]
    assert {"pull_request", "push", "schedule"} <= set(triggers)
    assert set(triggers["pull_request"]["paths"]) == {"configs/**", "stacks/**"}
    assert doc["permissions"] == {}, "nothing granted at the top; each job asks"

    uses = [step["uses"] for job in doc["jobs"].values() for step in job["steps"] if "uses" in step]
    assert uses
    for ref in uses:
        assert SHA_PIN.match(ref), f"{ref} is not pinned to a full commit SHA"

    jobs = doc["jobs"]
    for name, job in jobs.items():
        assert "permissions" in job, f"job {name} must declare its permissions"
        assert "write-all" not in str(job["permissions"])
    # Jobs that change a stack share its group and never cancel one another.
    for name in ("apply", "refresh"):
        assert jobs[name]["concurrency"] == {
            "group": "mlform-${{ matrix.stack }}",
            "cancel-in-progress": False,
        }
    scripts = {
        name: "\n".join(step.get("run", "") for step in job["steps"]) for name, job in jobs.items()
    }
    assert "--lock-timeout" in scripts["apply"]
    assert "mlform apply" in scripts["apply"]
    assert "mlform refresh" in scripts["refresh"] and "--detailed-exitcode" in scripts["refresh"]
    for command in ("mlform validate", "mlform policy check", "--format sarif", "--format github"):
        assert command in scripts["plan"]
    assert "--out out/plan.mlplan --format markdown" in scripts["plan"]
    assert any(
        step.get("uses", "").startswith("github/codeql-action/upload-sarif@")
        and step.get("if", "").startswith("${{ always()")
        for step in jobs["plan"]["steps"]
    )


# -- pre-commit hooks -----------------------------------------------------------------------


def test_pre_commit_hooks_run_real_commands() -> None:
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    assert isinstance(hooks, list)
    assert {h["id"] for h in hooks} == {"mlform-validate", "mlform-policy-check"}
    console_script = Path(sys.executable).parent / "mlform"
    assert console_script.is_file(), "the mlform console script is not installed in this venv"
    for hook in hooks:
        for field in ("id", "name", "entry", "language"):
            assert isinstance(hook.get(field), str) and hook[field], (hook, field)
        assert hook["language"] == "python"
        assert hook["pass_filenames"] is False
        assert re.search(hook["files"], "configs/data/patients.yaml")
        assert re.search(hook["files"], "stacks/prod.yaml")
        assert not re.search(hook["files"], "ml/model.py")
        program, *subcommand = hook["entry"].split()
        assert program == "mlform"
        result = subprocess.run(
            [str(console_script), *subcommand, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"{hook['entry']} --help: {result.stderr}"
        assert "Usage:" in result.stdout


# -- a pull request, end to end -------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout


def _init_repo(repo: Path) -> Path:
    copy_example(repo)
    (repo / ".gitignore").write_text(".mlform/\n*.mlplan\n", encoding="utf-8")
    _git(repo, "init", "--quiet", "--initial-branch=main")
    _git(repo, "config", "user.name", "mlform tests")
    _git(repo, "config", "user.email", "tests@mlform.invalid")
    _git(repo, "config", "commit.gpgsign", "false")
    _git(repo, "add", "-A")
    _git(repo, "commit", "--quiet", "-m", "The example system")
    return repo


def _checkout(origin: Path, dest: Path, ref: str, state_dir: Path) -> Path:
    """A CI job's checkout: a fresh clone whose .mlform/ is the shared, persistent state."""
    _git(origin.parent, "clone", "--quiet", str(origin), str(dest))
    _git(dest, "checkout", "--quiet", ref)
    state_dir.mkdir(exist_ok=True)
    (dest / ".mlform").symlink_to(state_dir, target_is_directory=True)
    return dest


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} not found once in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def _ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    return _init_repo(tmp_path / "repo")


def test_pull_request_plan_review_merge_apply(origin: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    # main has been applied (by an earlier merge).
    deployed = _checkout(origin, tmp_path / "ci-main-0", "main", state)
    _ok(run_cli(deployed, "apply", "-s", "dev", "--auto-approve"))

    # The pull request: a new split seed.
    _git(origin, "checkout", "--quiet", "-b", "new-split-seed")
    _edit(origin / "configs/features/diagnosis.yaml", "seed: 42", "seed: 7")
    _git(origin, "commit", "--quiet", "-am", "Reshuffle the train/test split")

    # The PR job, in its own checkout of the branch.
    pr = _checkout(origin, tmp_path / "ci-pr", "new-split-seed", state)
    assert "valid" in _ok(run_cli(pr, "validate", "-s", "dev")).stdout
    report = pr / "policy.sarif"
    _ok(
        run_cli(
            pr,
            "policy",
            "check",
            "-s",
            "prod",
            "--format",
            "sarif",
            "--output",
            str(report),
            env=PROD_ENV,
        )
    )
    sarif = json.loads(report.read_text(encoding="utf-8"))
    assert sarif["version"] == "2.1.0"
    assert sarif["runs"][0]["tool"]["driver"]["name"]
    errors = [r for run in sarif["runs"] for r in run.get("results", []) if r["level"] == "error"]
    assert errors == []

    saved = pr / "plan.mlplan"
    markdown = _ok(
        run_cli(pr, "plan", "-s", "dev", "--out", str(saved), "--format", "markdown")
    ).stdout
    summary = re.search(
        r"(\d+) to create, (\d+) to update, (\d+) to retrain, (?:\d+ to roll out, )?(\d+) "
        "to destroy",
        markdown,
    )
    assert summary is not None, markdown
    assert summary.group(2) != "0"  # features.diagnosis is updated
    assert summary.group(4) == "0"
    assert "features.diagnosis" in markdown
    assert "42" in markdown and "7" in markdown  # the changed field, old -> new
    assert saved.is_file() and saved.stat().st_size > 0

    # Review, merge; the CD job applies the saved plan from a fresh checkout of main.
    _git(origin, "checkout", "--quiet", "main")
    _git(origin, "merge", "--quiet", "--no-ff", "-m", "Merge new-split-seed", "new-split-seed")
    cd = _checkout(origin, tmp_path / "ci-main-1", "main", state)
    applied = _ok(run_cli(cd, "apply", str(saved), "--lock-timeout", "10"))
    assert "features.diagnosis" in applied.stdout + applied.stderr
    plan_after = json.loads(_ok(run_cli(cd, "plan", "-s", "dev", "--format", "json")).stdout)
    actions = {c["address"]: c["action"] for c in plan_after["changes"]}
    assert actions["features.diagnosis"] == "no-op"

    # The same saved plan again: the state moved, so it is stale and refused.
    again = run_cli(cd, "apply", str(saved))
    assert again.returncode == 1
    assert "stale" in (again.stdout + again.stderr).lower()


def _line_of(path: Path, pattern: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    matches = [n for n, line in enumerate(lines, start=1) if re.search(pattern, line)]
    assert len(matches) == 1, (pattern, matches)
    return matches[0]


def test_pull_request_removing_pii_encryption_fails_with_file_and_line(origin: Path) -> None:
    _git(origin, "checkout", "--quiet", "-b", "drop-encryption")
    patients = origin / PATIENTS
    _edit(patients, "encryption:\n  at_rest: true\n  key: kms://ml-platform/patients\n", "")
    _git(origin, "commit", "--quiet", "-am", "Stop encrypting the patient register")
    # The offending YAML key: the PII column that is left unencrypted.
    line = _line_of(patients, r"^\s+email:.*pii: true")

    github = run_cli(origin, "policy", "check", "-s", "prod", "--format", "github", env=PROD_ENV)
    assert github.returncode == 1, github.stdout + github.stderr
    annotations = [ln for ln in github.stdout.splitlines() if ln.startswith("::error ")]
    assert any(
        ln.startswith(f"::error file={PATIENTS},line={line}") and "pii.encryption" in ln
        for ln in annotations
    ), github.stdout

    sarif_run = run_cli(origin, "policy", "check", "-s", "prod", "--format", "sarif", env=PROD_ENV)
    assert sarif_run.returncode == 1, sarif_run.stderr
    sarif = json.loads(sarif_run.stdout)
    assert sarif["version"] == "2.1.0"
    located = [
        (result["ruleId"], loc["physicalLocation"])
        for run in sarif["runs"]
        for result in run["results"]
        if result["level"] == "error"
        for loc in result.get("locations", [])
    ]
    assert any(
        rule == "pii.encryption"
        and where["artifactLocation"]["uri"] == PATIENTS
        and where["region"]["startLine"] == line
        for rule, where in located
    ), located
