"""A sweep's points are first-class stage runs: one real ``nbops run`` of an example-like
pipeline (prepare -> a swept train that writes per-point outs -> evaluate that reads one point's
model), then what each command makes of every kind of run it made. Real kernels, a real store."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import xxhash

from tests.conftest import nbops_cli, notebook, states

YAML = """\
experiment: sweepy
stages:
  prepare:
    notebook: prepare.ipynb
    params: {n: 3}
    outs: [data/train.txt]
  train:
    notebook: train.ipynb
    deps: [data/train.txt]
    outs: ["models/model-C${C}.txt", "models/model-C${C}.json", logs]
    sweep: {C: [1, 2]}
  evaluate:
    notebook: evaluate.ipynb
    deps: [models]
    outs: [reports/r.txt]
"""


def nbops(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return nbops_cli(*args, cwd=root, timeout=300)


def digest(path: Path) -> str:
    return xxhash.xxh3_128(path.read_bytes()).hexdigest()


def outs_json(client, run_id: str, tmp: Path) -> dict:
    return json.loads(Path(client.download_artifacts(run_id, "outs.json", str(tmp))).read_text())


def test_sweep_points_carry_their_own_outs_and_every_command_takes_every_kind_of_run(
    project, client, tmp_path
):
    notebook(
        project / "prepare.ipynb",
        ("n = 1", ["parameters"]),
        "from pathlib import Path\nPath('data').mkdir(exist_ok=True)\n"
        "Path('data/train.txt').write_text('x' * n)",
    )
    notebook(
        project / "train.ipynb",
        ("C = 1", ["parameters"]),
        "import json, nbops\nfrom pathlib import Path\nPath('models').mkdir(exist_ok=True)\n"
        "text = Path('data/train.txt').read_text()\n"
        "Path(f'models/model-C{C}.txt').write_text(text * C)\n"
        "Path(f'models/model-C{C}.json').write_text(json.dumps({'C': C}))\n"
        "Path('logs').mkdir(exist_ok=True)\nPath(f'logs/C{C}.log').write_text('fitted')\n"
        "nbops.log_metric('score', C)",
    )
    notebook(
        project / "evaluate.ipynb",
        "import nbops\nfrom pathlib import Path\npath = 'models/model-C2.txt'\n"
        "nbops.track_data(path)\nPath('reports').mkdir(exist_ok=True)\n"
        "Path('reports/r.txt').write_text(Path(path).read_text().upper())",
    )
    (project / "nbops.yaml").write_text(YAML)

    first = nbops(project, "run", "--jobs", "2")
    assert first.returncode == 0, first.stdout + first.stderr
    got = states(first.stdout)
    assert {"prepare", "train[C=1]", "train[C=2]", "evaluate"} <= set(got), first.stdout
    assert set(got.values()) == {"done"}, first.stdout

    exp = client.get_experiment_by_name("sweepy")
    runs = client.search_runs([exp.experiment_id])
    by_point = {
        r.data.tags["nbops.sweep_point"]: r for r in runs if "nbops.sweep_point" in r.data.tags
    }
    stage = {
        r.data.tags["nbops.stage"]: r
        for r in runs
        if "nbops.stage" in r.data.tags and "nbops.sweep_point" not in r.data.tags
    }
    (pipeline,) = [r for r in runs if "nbops.pipeline" in r.data.tags]
    parent = stage["train"]
    assert sorted(by_point) == ["train[C=1]", "train[C=2]"]
    own = {
        label: [f"models/model-C{c}.txt", f"models/model-C{c}.json"]
        for label, c in (("train[C=1]", 1), ("train[C=2]", 2))
    }
    # each point run: its own outs in outs.json and as nbops.out.<path>, the digests of the files
    for label, point in by_point.items():
        tags = point.data.tags
        assert tags["nbops.stage"] == "train"
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert {k for k in tags if k.startswith("nbops.out.")} == {
            f"nbops.out.{p}" for p in own[label]
        }
        for p in own[label]:
            assert tags[f"nbops.out.{p}"] == digest(project / p)
        record = outs_json(client, point.info.run_id, tmp_path / label)
        assert sorted(record) == sorted(own[label])
        assert {p: r["digest"] for p, r in record.items()} == {
            p: digest(project / p) for p in own[label]
        }
    # the sweep's run: every point's outs and the shared folder, with both points' logs
    union = own["train[C=1]"] + own["train[C=2]"]
    whole = outs_json(client, parent.info.run_id, tmp_path / "parent")
    assert sorted(whole) == sorted([*union, "logs"])
    assert sorted(whole["logs"]["files"]) == ["C1.log", "C2.log"]
    assert json.loads(parent.data.tags["nbops.shared_outs"]) == ["logs"]
    assert parent.data.tags["nbops.out.logs"] == whole["logs"]["digest"]
    # evaluate tracked the model it read: the same digest as the point that wrote it
    tracked = [v for k, v in stage["evaluate"].data.tags.items() if k.startswith("nbops.data.")]
    assert tracked == [by_point["train[C=2]"].data.tags["nbops.out.models/model-C2.txt"]]

    # status --check: 0 when all is up to date; 1 naming exactly the stale point and downstream
    ok = nbops(project, "status", "--check")
    assert ok.returncode == 0 and "everything is up to date" in ok.stdout, ok.stdout + ok.stderr
    before = {p: (project / p).read_bytes() for p in union}
    for p in own["train[C=1]"]:
        (project / p).unlink()
    (project / "models/model-C2.json").unlink()  # the other point's file: not C=1's to restore
    stale = nbops(project, "status", "--check")
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert re.search(r"train\[C=1\]\s+stale\s+out missing: models/model-C1.txt", stale.stdout)
    assert "nbops status --check: 3 of 4 not up to date (train[C=1], train[C=2], evaluate)" in (
        stale.stdout
    )

    # checkout of a point restores exactly its own files, byte for byte
    done = nbops(project, "checkout", by_point["train[C=1]"].info.run_id)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(done.stdout.splitlines()) == sorted(
        [
            *(f"restored {p}" for p in own["train[C=1]"]),
            "not restored: logs is shared by every point of the sweep of stage 'train' "
            f"(`nbops checkout {parent.info.run_id}` restores it, with every point's files)",
        ]
    )
    for p in own["train[C=1]"]:
        assert (project / p).read_bytes() == before[p]
    assert not (project / "models/model-C2.json").exists()
    # checkout of the sweep's run restores every point's
    done = nbops(project, "checkout", parent.info.run_id)
    assert done.returncode == 0, done.stdout + done.stderr
    assert {p: (project / p).read_bytes() for p in union} == before
    # a pipeline run names its stage runs; a run of no stage says what it is and what to pick
    refused = nbops(project, "checkout", pipeline.info.run_id)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"run {pipeline.info.run_id} is a pipeline run" in refused.stderr
    assert f"train {parent.info.run_id}" in refused.stderr
    assert f"prepare {stage['prepare'].info.run_id}" in refused.stderr
    assert "Traceback" not in refused.stderr
    loose = client.create_run(exp.experiment_id, run_name="by-hand").info.run_id
    refused = nbops(project, "checkout", loose)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"run {loose} (by-hand) is not a pipeline stage run: it has no nbops.stage tag" in (
        refused.stderr
    )

    # diff of two points: their differing outs (and params, metrics); the shared folder is the
    # same sweep's, so it does not differ; against the sweep's run, only the other point's files
    against_sweep = nbops(
        project, "diff", by_point["train[C=1]"].info.run_id, parent.info.run_id
    ).stdout
    assert "models/model-C2.txt: (none) → " in against_sweep and "logs" not in against_sweep
    diff = nbops(
        project, "diff", by_point["train[C=1]"].info.run_id, by_point["train[C=2]"].info.run_id
    )
    assert diff.returncode == 0, diff.stderr
    assert "C: 1 → 2" in diff.stdout and "score: 1.0 → 2.0" in diff.stdout
    c1 = digest(project / "models/model-C1.txt")
    assert f"models/model-C1.txt: {c1} → (none)" in diff.stdout
    c2 = digest(project / "models/model-C2.txt")
    assert f"models/model-C2.txt: (none) → {c2}" in diff.stdout

    # --force of a downstream stage forces it alone: upstream is up to date and stays so
    forced = nbops(project, "run", "evaluate", "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert states(forced.stdout) == {
        "prepare": "up to date",
        "train": "up to date",
        "evaluate": "done",
    }, forced.stdout
    after = client.search_runs([exp.experiment_id], "tags.`nbops.stage` = 'train'")
    assert len(after) == 3  # no new train runs
