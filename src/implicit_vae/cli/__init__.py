"""The ``implicit-vae`` command line: ``train | describe | evaluate | compare | benchmark``."""

from .main import EXIT_NONFINITE, EXIT_USAGE, default_config_path, main, resolve_config

__all__ = ["EXIT_NONFINITE", "EXIT_USAGE", "default_config_path", "main", "resolve_config"]
