"""Secrets: redaction tokens in config, clear values only through reveal()."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest

from mlform import secrets
from mlform.config import compose_system
from mlform.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
KEY = b"test-key"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFORM_SECRET_KEY", "MLFORM_SECRETS_DIR", "MLFORM_SECRET_ALERT_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def test_env_var_name() -> None:
    assert secrets.secret_env_var("alert_token") == "MLFORM_SECRET_ALERT_TOKEN"
    assert secrets.secret_env_var("db.pass-word") == "MLFORM_SECRET_DB_PASS_WORD"


def test_token_is_keyed_and_hides_the_value() -> None:
    token = secrets.redact_token("db", "hunter2", KEY)
    assert secrets.SECRET_TOKEN_RE.fullmatch(token)
    assert "hunter2" not in token
    assert token == secrets.redact_token("db", "hunter2", KEY)
    assert token != secrets.redact_token("db", "hunter3", KEY)
    assert token != secrets.redact_token("db", "hunter2", b"other-key")


def test_find_tokens_and_is_sensitive() -> None:
    a = secrets.redact_token("a", "1", KEY)
    b = secrets.redact_token("b.c", "2", KEY)
    config = {"x": [f"Bearer {a}", {"y": (b,)}], "z": "plain", "n": 3}
    assert secrets.find_tokens(config) == {"a", "b.c"}
    assert secrets.is_sensitive(config)
    assert secrets.is_sensitive(f"pre {a} post")
    assert not secrets.is_sensitive({"z": "plain", "n": [1, None]})
    assert not secrets.is_sensitive("<secret:a:nothex>")


def test_lookup_env_then_secrets_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "db").write_text("from-file\n")
    monkeypatch.setenv("MLFORM_SECRETS_DIR", str(tmp_path))
    assert secrets.default_lookup("db") == "from-file"
    monkeypatch.setenv("MLFORM_SECRET_DB", "from-env")
    assert secrets.default_lookup("db") == "from-env"
    assert secrets.default_lookup("other") is None


def test_read_secret_missing_names_both_ways() -> None:
    with pytest.raises(ConfigError) as info:
        secrets.read_secret("db", key="data.x.url")
    diag = info.value.diagnostics[0]
    assert diag.key == "data.x.url"
    assert "MLFORM_SECRET_DB" in diag.detail
    assert "MLFORM_SECRETS_DIR" in diag.detail


def test_reveal_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFORM_SECRET_DB", "hunter2")
    token = secrets.redact_token("db", "hunter2", KEY)
    config = {"url": f"postgresql://u:{token}@h/db", "list": [token], "n": 1}
    clear = secrets.reveal(config, key=KEY)
    assert clear == {"url": "postgresql://u:hunter2@h/db", "list": ["hunter2"], "n": 1}
    assert config["list"] == [token]  # the input is not modified


def test_reveal_refuses_a_changed_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    token = secrets.redact_token("db", "old-value", KEY)
    monkeypatch.setenv("MLFORM_SECRET_DB", "new-value")
    with pytest.raises(ConfigError) as info:
        secrets.reveal({"url": token}, key=KEY)
    assert "changed" in info.value.diagnostics[0].summary
    assert "new-value" not in str(info.value.diagnostics[0])


def test_reveal_with_a_custom_lookup() -> None:
    token = secrets.redact_token("db", "v", KEY)
    assert secrets.reveal(token, lambda name: {"db": "v"}.get(name), key=KEY) == "v"


def test_generated_key_file_is_private_and_stable(tmp_path: Path) -> None:
    key = secrets.load_hmac_key(tmp_path)
    path = secrets.key_file(tmp_path)
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secrets.load_hmac_key(tmp_path) == key
    assert len(key) >= 32


def test_key_from_env_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLFORM_SECRET_KEY", "k1")
    assert secrets.load_hmac_key(tmp_path) == b"k1"
    assert not secrets.key_file(tmp_path).exists()


def test_composed_config_holds_tokens_never_values(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for part in ("configs", "stacks"):
        shutil.copytree(REPO / part, tmp_path / part)
    monkeypatch.setenv("MLFORM_SECRET_ALERT_TOKEN", "Value-Of-The-Secret-1")
    override = "+data.tumors.labels={note: 'k ${secret:alert_token}'}"
    first = compose_system(tmp_path, "prod", [override])
    text = json.dumps(first.data)
    assert "Value-Of-The-Secret-1" not in text
    assert secrets.find_tokens(first.data) == {"alert_token"}
    header = first.data["monitors"]["diagnosis-drift"]["alerts"][1]["headers"]["Authorization"]
    assert header.startswith("Bearer <secret:alert_token:")
    assert secrets.reveal(header, project_dir=tmp_path) == "Bearer Value-Of-The-Secret-1"

    monkeypatch.setenv("MLFORM_SECRET_ALERT_TOKEN", "Value-Of-The-Secret-2")
    second = compose_system(tmp_path, "prod", [override])
    assert "Value-Of-The-Secret-2" not in json.dumps(second.data)
    assert second.data["data"]["tumors"]["labels"] != first.data["data"]["tumors"]["labels"]
    with pytest.raises(ConfigError):
        secrets.reveal(header, project_dir=tmp_path)  # the old token no longer matches
