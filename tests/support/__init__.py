"""Helpers shared by taskrt's tests (services, subprocess workers, test plugins)."""
