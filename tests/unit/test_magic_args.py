"""The magic's parsed line is remembered per line, and each call gets a namespace of its own."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from nbops.ipython.magics import TrackMagics


def test_a_repeated_line_parses_once_and_shares_nothing_mutable() -> None:
    m = TrackMagics(None)
    first = m._args("start -t a=1 -q")
    first.tag.append("b=2")
    first.quiet = False
    again = m._args("start -t a=1 -q")
    assert again.tag == ["a=1"] and again.quiet is True and again.words == ["start"]
    assert list(m.arg_cache) == ["start -t a=1 -q"]
    assert m._args("").words == [] and m._args("").name is None


def test_a_bad_line_is_refused_every_time_and_not_remembered() -> None:
    m = TrackMagics(None)
    for _ in range(2):
        with pytest.raises(UsageError):
            m._args("--step notanumber")
    assert m.arg_cache == {}
