"""The ``implicit-vae`` command line: ``train | describe | evaluate | compare | benchmark``."""

from .common import EXIT_NONFINITE, EXIT_USAGE, default_config_path, resolve_config
from .main import main

__all__ = ["EXIT_NONFINITE", "EXIT_USAGE", "default_config_path", "main", "resolve_config"]
