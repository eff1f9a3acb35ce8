"""``nbops checkout`` and ``nbops diff`` of runs that wrote no outs, with exact messages: a failed
sweep point, a pipeline run whose stages were all up to date, a run of no stage. The runs are
made in a real store with MLflow's client (as nbops run would tag them); no kernel."""

from __future__ import annotations

from tests.conftest import nbops_cli


def test_runs_without_outs_are_refused_saying_what_they_are_and_what_to_pick(project, client):
    (project / "nbops.yaml").write_text("stages:\n  train:\n    notebook: train.ipynb\n")
    exp = client.create_experiment("kinds")
    pipeline = client.create_run(exp, tags={"nbops.pipeline": "nbops.yaml"}).info.run_id
    client.set_terminated(pipeline)
    parent = client.create_run(
        exp, tags={"nbops.stage": "train", "mlflow.parentRunId": pipeline}
    ).info.run_id
    point = client.create_run(
        exp,
        tags={
            "nbops.stage": "train",
            "nbops.sweep_point": "train[C=1]",
            "mlflow.parentRunId": parent,
        },
    ).info.run_id
    client.set_terminated(point, "FAILED")
    lone = client.create_run(exp, tags={"nbops.pipeline": "nbops.yaml"}).info.run_id

    failed = nbops_cli("checkout", point, cwd=project)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr, failed.stderr
    assert (
        f"run {point} is sweep point train[C=1] of stage 'train': it recorded no outs.json "
        "(it ended FAILED, before its outs were versioned)"
    ) in failed.stderr
    assert f"hint: its sweep's run holds every point's outs: nbops checkout {parent}" in (
        failed.stderr
    )

    idle = nbops_cli("checkout", lone, cwd=project)
    assert idle.returncode == 2, idle.stderr
    assert f"run {lone} is a pipeline run (one `nbops run` of nbops.yaml) and none of its " in (
        idle.stderr
    )
    assert "stages ran (they were up to date): it has no outs" in idle.stderr

    named = nbops_cli("checkout", pipeline, cwd=project)
    assert named.returncode == 2, named.stderr
    assert f"its outs are on its stage runs: train {parent}" in named.stderr
    assert f"hint: restore one stage's outs: nbops checkout {parent}" in named.stderr

    diff = nbops_cli("diff", point, lone, cwd=project)
    assert diff.returncode == 0, diff.stderr
    assert f"outs of pipeline run {lone}: those of its stage runs" in diff.stdout
