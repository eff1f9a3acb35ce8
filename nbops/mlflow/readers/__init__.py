"""Reading runs fast, behind one interface (:class:`~nbops.mlflow.readers.base.Reader`).

- :mod:`~nbops.mlflow.readers.client`: through MLflow's client, for every tracking store;
- :mod:`~nbops.mlflow.readers.sqlite`: read-only SQL on a SQLite store whose schema revision
  it knows, else the client path (a PostgreSQL reader would sit beside it).

Both answer with the same models (:mod:`~nbops.mlflow.readers.models`) for the same query.
Importing this package imports no MLflow.
"""
