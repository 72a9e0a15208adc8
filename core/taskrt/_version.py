"""The version of taskrt, read by the build backend and by ``taskrt --version``."""

__version__ = "0.1.0"
