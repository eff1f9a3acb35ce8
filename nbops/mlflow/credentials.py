"""Who talks to a tracking server, and how to name the server without leaking a password.

Standard library only (no MLflow import): the CLI, the magics and the server use these to word an
:class:`~nbops.errors.AccessDenied` and to show a tracking URI.

- :func:`login`: the user name MLflow sends (``MLFLOW_TRACKING_USERNAME``, or one written into the
  URI as ``http://user@host``), None when it sends none.
- :func:`user`: the person: :func:`login`, else the operating system's user.
- :func:`server`: the URI as it may be printed: ``http://user:secret@host`` becomes
  ``http://user@host``; a password in a query string (``?password=...``) is masked too.
- :func:`refused`: the :class:`~nbops.errors.AccessDenied` for a server's 401 or 403.
"""

from __future__ import annotations

import getpass
import os
import urllib.parse

from nbops import envvars
from nbops.errors import AccessDenied

_SECRET_QUERY_KEYS = ("password", "passwd", "pwd", "token", "secret", "access_token")


def is_http(uri: str) -> bool:
    """True for a tracking server (``http://`` / ``https://``), the only kind with a login."""
    return uri.lower().startswith(("http://", "https://"))


def login(uri: str | None = None) -> str | None:
    """The user name MLflow logs in with: ``MLFLOW_TRACKING_USERNAME``, else one written into
    ``uri`` (``http://alice@host``); None when there is none (MLflow sends no login)."""
    name = os.environ.get(envvars.MLFLOW_TRACKING_USERNAME, "").strip()
    if name:
        return name
    if uri and is_http(uri):
        try:
            embedded = urllib.parse.urlsplit(uri).username
        except ValueError:
            return None
        if embedded:
            return urllib.parse.unquote(embedded)
    return None


def password_set(uri: str | None = None) -> bool:
    """True when MLflow sends a password (``MLFLOW_TRACKING_PASSWORD`` or one in ``uri``)."""
    if os.environ.get(envvars.MLFLOW_TRACKING_PASSWORD):
        return True
    if uri and is_http(uri):
        try:
            return bool(urllib.parse.urlsplit(uri).password)
        except ValueError:
            return False
    return False


def user(uri: str | None = None) -> str:
    """The person nbops acts for: the server login (:func:`login`), else the OS user."""
    name = login(uri)
    if name:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's anonymous uid)
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"


def server(uri: str) -> str:
    """``uri`` as it may be shown: no password in it (``http://u:pw@h`` -> ``http://u@h``), and
    secrets in its query string masked. Anything not a URL comes back unchanged."""
    if "://" not in uri:
        return uri
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        return uri.split("://", 1)[0] + "://<unparsable address>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        name = userinfo.split(":", 1)[0]
        netloc = f"{name}@{hostport}" if name else hostport
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in _SECRET_QUERY_KEYS for k, _ in pairs):
            query = "&".join(
                f"{k}={'***' if k.lower() in _SECRET_QUERY_KEYS else v}" for k, v in pairs
            )
    if netloc == parts.netloc and query == parts.query:
        return uri  # nothing to hide (and sqlite:///x stays sqlite:///x)
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


# --- what a refused call means ------------------------------------------------------------------
# MLflow's permission levels, weakest first (NO_PERMISSIONS < READ < EDIT < MANAGE)
READ, EDIT, MANAGE = "READ", "EDIT", "MANAGE"

#: MlflowClient method -> (what nbops was doing, the permission it needs, whether it writes
#: tracking data, which the spool keeps). A method not listed reads (READ).
CALLS: dict[str, tuple[str, str, bool]] = {
    "create_run": ("create a run in", EDIT, True),
    "log_batch": ("log to", EDIT, True),
    "log_artifact": ("upload artifacts to", EDIT, True),
    "log_artifacts": ("upload artifacts to", EDIT, True),
    "log_inputs": ("log datasets to", EDIT, True),
    "set_terminated": ("end", EDIT, True),
    "set_tag": ("tag", EDIT, True),
    "update_run": ("update", EDIT, True),
    "delete_run": ("delete", MANAGE, False),
    "create_experiment": ("create", EDIT, True),
    "set_experiment_tag": ("tag", EDIT, False),
    "delete_experiment": ("delete", MANAGE, False),
    "create_registered_model": ("register", EDIT, False),
    "create_model_version": ("add a version to", EDIT, False),
    "set_registered_model_alias": ("move an alias of", EDIT, False),
    "delete_registered_model_alias": ("remove an alias of", EDIT, False),
    "set_registered_model_tag": ("tag", EDIT, False),
    "set_model_version_tag": ("tag a version of", EDIT, False),
    "transition_model_version_stage": ("change a stage of", EDIT, False),
    "delete_registered_model": ("delete", MANAGE, False),
    "delete_model_version": ("delete a version of", MANAGE, False),
}

SPOOLED = "anything logged meanwhile stays spooled and `nbops sync` delivers it once this is fixed"


def is_refusal(message: str) -> bool:
    """True when ``message`` is an :func:`refused` message (a writer keeps only the message of
    its last error in the spool's state: this tells a refusal from an unreachable store)."""
    return "(HTTP 401" in message or "(HTTP 403" in message


def refused(uri: str, status: int, call: str, target: str | None) -> AccessDenied:
    """The :class:`~nbops.errors.AccessDenied` for a tracking server's 401 (bad login) or 403
    (missing permission) to ``call`` (an MlflowClient method name) on ``target`` ("experiment
    'x' (id 3)", "model 'm'", None for the whole server): one line naming the server, the user
    and the target; the hint says what to set or whom to ask. Never a password."""
    where = server(uri)
    name = login(uri)
    action, needed, writes = CALLS.get(call, ("read", READ, False))
    if status == 401:
        creds = f"{envvars.MLFLOW_TRACKING_USERNAME} and {envvars.MLFLOW_TRACKING_PASSWORD}"
        if name is None:
            message = f"{where} requires a login and none is set ({creds} are not set; HTTP 401)"
            hint = f"set {creds} to your account on {where} (its admin creates accounts)"
        elif not password_set(uri):
            message = (
                f"{where} refused the login of user {name!r}: "
                f"{envvars.MLFLOW_TRACKING_PASSWORD} is not set (HTTP 401)"
            )
            hint = f"set {envvars.MLFLOW_TRACKING_PASSWORD} to {name}'s password on {where}"
        elif not os.environ.get(envvars.MLFLOW_TRACKING_PASSWORD):
            message = (
                f"{where} refused the login of user {name!r}: wrong password (written in "
                f"{envvars.MLFLOW_TRACKING_URI}) or no such user (HTTP 401)"
            )
            hint = (
                f"fix the password in {envvars.MLFLOW_TRACKING_URI}, or better take it out and "
                f"set {envvars.MLFLOW_TRACKING_PASSWORD} (a URI is shown and logged, a "
                "variable is not)"
            )
        else:
            message = (
                f"{where} refused the login of user {name!r}: wrong password or no such "
                "user (HTTP 401)"
            )
            hint = (
                f"set {envvars.MLFLOW_TRACKING_PASSWORD} to {name}'s password on {where} "
                f"(or {envvars.MLFLOW_TRACKING_USERNAME} to your account); its admin creates "
                "and resets accounts"
            )
        return AccessDenied(f"{message}", f"{hint}; {SPOOLED}")
    who = name or user(uri)
    on = target or "this server"
    message = (
        f"{where} refused user {who!r} permission to {action} {on} (HTTP 403: it needs {needed})"
    )
    hint = (
        f"ask an admin of {where} (or a user with MANAGE on it) to grant {who!r} {needed} on "
        f"{on}, or log in as a user who has it ({envvars.MLFLOW_TRACKING_USERNAME} / "
        f"{envvars.MLFLOW_TRACKING_PASSWORD})"
    )
    if name is None:
        hint = (
            f"log in: set {envvars.MLFLOW_TRACKING_USERNAME} and "
            f"{envvars.MLFLOW_TRACKING_PASSWORD} to an account with {needed} on {on}"
        )
    return AccessDenied(message, f"{hint}; {SPOOLED}" if writes else hint)


__all__ = [
    "CALLS",
    "EDIT",
    "MANAGE",
    "READ",
    "is_http",
    "is_refusal",
    "login",
    "password_set",
    "refused",
    "server",
    "user",
]
