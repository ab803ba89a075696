"""mlform: plan and apply whole ML systems declared in Hydra YAML.

The package root stays import-light so that ``mlform --help`` starts fast; the
library surface lives in :mod:`mlform.api`.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
