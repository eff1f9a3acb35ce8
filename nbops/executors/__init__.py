"""How a stage's notebook is executed. The runner only sees the Executor interface (base.py);
what nbops uses of jupyter_client's internals is reached through compat.py alone."""
