"""Reading runs fast, behind one interface (:class:`~nbops.mlflow.readers.base.Reader`).

- :mod:`~nbops.mlflow.readers.client`: through MLflow's client, for every tracking store;
- :mod:`~nbops.mlflow.readers.sql`: read-only SQL over MLflow's tables, written once for the two
  databases below, each used when it is at a schema revision the SQL knows, else the client path:
  :mod:`~nbops.mlflow.readers.sqlite` (the embedded store) and
  :mod:`~nbops.mlflow.readers.postgres` (a tracking server's PostgreSQL, given a read-only login
  in ``NBOPS_READ_DATABASE_URI``, or a ``postgresql://`` store).

Both answer with the same models (:mod:`~nbops.mlflow.readers.models`) for the same query.
Importing this package imports no MLflow.
"""


def preload() -> None:
    """Import what the MlflowClient path needs (MLflow's client and its search parser) now, in
    one thread: the server calls it in the background at start, so the first request does not
    wait, and no two threads import MLflow at once (its circular imports break then)."""
    import mlflow.utils.search_utils  # noqa: F401

    import nbops.mlflow.store  # noqa: F401  (imports MlflowClient)
