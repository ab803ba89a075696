"""The public library surface: every name in mlform.api.__all__ exists and is documented."""

from __future__ import annotations

import inspect

import mlform.api as api


def test_all_names_exist_and_have_docs_or_are_types() -> None:
    assert sorted(api.__all__) == api.__all__
    for name in api.__all__:
        obj = getattr(api, name)
        assert callable(obj), name
        if inspect.isfunction(obj) and name not in {
            "state_list",
            "state_show",
            "state_history",
            "unlock",
            "export_state",
            "import_state",
        }:
            assert obj.__doc__, f"api.{name} needs a docstring"


def test_public_functions_do_not_leak_private_names() -> None:
    public = {
        n
        for n in dir(api)
        if not n.startswith("_")
        and inspect.isfunction(getattr(api, n))
        and getattr(api, n).__module__ == "mlform.api"
    }
    assert public == {n for n in api.__all__ if not inspect.isclass(getattr(api, n))}


def test_importing_the_cli_stays_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, mlform.cli.app;"
        "heavy = [m for m in ('hydra', 'omegaconf', 'duckdb', 'sklearn', 'pandas', 'torch', "
        "'pulumi', 'deepdiff', 'pyarrow') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
