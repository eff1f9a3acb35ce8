"""How a stage's notebook is executed. The runner only sees the Executor interface (base.py)."""
