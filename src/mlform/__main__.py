"""``python -m mlform``: the same as the ``mlform`` command."""

from mlform.cli.app import main

main()
