"""taskrt's built-in plugins.

They register through the ``taskrt`` entry-point group in taskrt's own ``pyproject.toml``,
exactly like third-party plugins; the core never imports this package.
"""
