"""Cron schedules: fire-time arithmetic (:mod:`~taskrt.scheduler.cron`) and the scheduler loop
(:mod:`~taskrt.scheduler.runner`)."""
