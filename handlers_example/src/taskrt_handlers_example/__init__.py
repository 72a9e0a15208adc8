"""Example task handlers for taskrt; see :mod:`taskrt_handlers_example.plugin`."""

__version__ = "0.1.0"
