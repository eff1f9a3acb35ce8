"""Reading runs fast, behind one interface (:class:`~nbops.mlflow.readers.base.Reader`).

- :mod:`~nbops.mlflow.readers.client`: through MLflow's client, for every tracking store;
- :mod:`~nbops.mlflow.readers.sqlite`: read-only SQL on a SQLite store whose schema revision
  it knows, else the client path (a PostgreSQL reader would sit beside it).

Both answer with the same models (:mod:`~nbops.mlflow.readers.models`) for the same query.
Importing this package imports no MLflow.
"""


def preload() -> None:
    """Import what the MlflowClient path needs (MLflow's client and its search parser) now, in
    one thread: the server calls it in the background at start, so the first request does not
    wait, and no two threads import MLflow at once (its circular imports break then)."""
    import mlflow.utils.search_utils  # noqa: F401

    import nbops.mlflow.store  # noqa: F401  (imports MlflowClient)
