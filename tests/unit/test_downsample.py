"""Compare answers carry at most MAX_POINTS per series, keeping the series' shape."""

from nbops.mlflow.readers.base import downsample


def test_short_series_pass_unchanged():
    pts = [(i, float(i)) for i in range(100)]
    assert downsample(pts, 2000) is pts


def test_long_series_keep_ends_spikes_and_order():
    pts = [(i, 0.0) for i in range(100_000)]
    pts[5_000] = (5_000, 99.0)  # a spike every-n-th sampling would likely miss
    pts[70_001] = (70_001, -7.0)  # and a dip
    out = downsample(pts, 2000)
    assert len(out) <= 2000
    assert out[0] == pts[0] and out[-1] == pts[-1]
    assert (5_000, 99.0) in out and (70_001, -7.0) in out
    steps = [s for s, _ in out]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)


def test_gaps_survive_in_an_all_nan_stretch():
    pts = [(i, None if 10_000 <= i < 20_000 else 1.0) for i in range(50_000)]
    out = downsample(pts, 500)
    assert len(out) <= 500 and any(v is None for _, v in out)
