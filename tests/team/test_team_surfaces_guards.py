"""Which artifact URIs the sidebar reads on a server store, and the one path rule of local and
remote artifacts, for any input (these come from store rows anyone with a login can write)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nbops.errors import InvalidInput
from nbops.server.artifacts import own_host, proxied, relative


@pytest.mark.parametrize(
    ("uri", "fetched", "foreign"),
    [
        ("mlflow-artifacts:/1/abc/artifacts", True, False),
        ("MLFLOW-ARTIFACTS:/1/abc/artifacts", True, False),
        ("mlflow-artifacts://evil:5000/1/abc", False, True),
        ("http://evil/1/abc", False, True),
        ("HTTPS://evil/1/abc", False, True),
        ("s3://bucket/1/abc", False, False),
        ("file:///etc", False, False),
        ("/srv/mlruns/1/abc", False, False),
        ("", False, False),
        (None, False, False),
    ],
)
def test_only_the_servers_own_proxied_artifacts_are_fetched(
    uri: str | None, fetched: bool, foreign: bool
) -> None:
    assert proxied(uri) is fetched
    assert own_host(uri) is foreign


@given(st.text(max_size=300))
def test_proxied_and_own_host_never_both_and_never_raise(uri: str) -> None:
    assert not (proxied(uri) and own_host(uri))


@given(st.lists(st.sampled_from(["a", "b.txt", "..", ".", "~", "", "x/..", "\\.."]), max_size=6))
def test_a_relative_artifact_path_never_climbs(parts: list[str]) -> None:
    rel = "/".join(parts)
    try:
        p = relative(rel)
    except InvalidInput:
        return
    assert rel and not p.is_absolute() and ".." not in p.parts and not rel.startswith("~")
