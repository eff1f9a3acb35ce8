"""Schedules: the one schedule model (model.py) and its one check (validation.py), cron times
(cron.py), the pure planning core (core.py), persistence (store.py), where schedules come from
(sources.py), one execution as a process (execution.py), the daemon (daemon.py), the Python API
for other surfaces (api.py) and the CLI verbs (commands.py)."""
