"""The environment every Pulumi CLI run of a stack gets.

The secrets passphrase comes from ``MLFORM_PULUMI_PASSPHRASE``, else
``PULUMI_CONFIG_PASSPHRASE``, else a passphrase generated once and kept next to the stack
(``<work_dir>/passphrase``, mode 0600): losing it makes the stack's secrets unreadable.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from pathlib import Path

from mlform.pulumi_engine.toolchain import Toolchain

PASSPHRASE_FILE = "passphrase"


def passphrase(work_dir: Path) -> str:
    """The stack's secrets passphrase (see the module docstring for where it comes from)."""
    for name in ("MLFORM_PULUMI_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE"):
        value = os.environ.get(name)
        if value is not None:
            return value
    return stored_passphrase(work_dir / PASSPHRASE_FILE)


def stored_passphrase(path: Path) -> str:
    """Read the passphrase at ``path``, creating it (0600, atomically) the first time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    generated = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_existing(path)
    try:
        os.write(fd, generated.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return generated


def _read_existing(path: Path) -> str:
    # Another process may have created the file a moment ago and not written it yet.
    for _ in range(100):
        text = path.read_text(encoding="ascii").strip()
        if text:
            return text
        time.sleep(0.02)
    raise OSError(
        f"the Pulumi passphrase file {path} is empty; delete it only if the stack holds no secrets"
    )


def package_root() -> Path:
    """The directory that contains the ``mlform`` package (for the launcher's PYTHONPATH)."""
    import mlform

    return Path(mlform.__file__).resolve().parent.parent


def engine_environment(work_dir: Path, toolchain: Toolchain) -> dict[str, str]:
    """Variables for every Pulumi CLI run (and the Python launcher it starts)."""
    python_path = [str(package_root())]
    if os.environ.get("PYTHONPATH"):
        python_path.append(os.environ["PYTHONPATH"])
    path = [*toolchain.path_entries]
    if os.environ.get("PATH"):
        path.append(os.environ["PATH"])
    return {
        "PULUMI_CONFIG_PASSPHRASE": passphrase(work_dir),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_PYTHON_CMD": sys.executable,
        "PYTHONPATH": os.pathsep.join(python_path),
        "PATH": os.pathsep.join(path),
        "PULUMI_HOME": str(work_dir / "home"),
    }
