from pathlib import Path

from nbops import project


def test_root_is_nearest_dir_with_nbops_yaml_or_state(tmp_path, monkeypatch):
    monkeypatch.delenv("NBOPS_PROJECT_ROOT", raising=False)
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "a" / "nbops.yaml").write_text("stages: {}\n")
    assert project.find_root(tmp_path / "a" / "b" / "c") == (tmp_path / "a").resolve()
    (tmp_path / "a" / "b" / ".nbops").mkdir()
    assert project.find_root(tmp_path / "a" / "b" / "c") == (tmp_path / "a" / "b").resolve()


def test_root_falls_back_to_git_work_tree_then_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv("NBOPS_PROJECT_ROOT", raising=False)
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "repo" / "nb").mkdir()
    assert project.find_root(tmp_path / "repo" / "nb") == (tmp_path / "repo").resolve()


def test_tracking_uri_respects_env_else_embedded_sqlite(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = project.tracking_uri(tmp_path)
    assert uri == f"sqlite:///{tmp_path}/.nbops/mlflow.db"
    assert project.artifact_root_for(uri) == tmp_path / ".nbops" / "artifacts"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert project.tracking_uri(tmp_path) == "http://127.0.0.1:5999"
    assert project.artifact_root_for("http://127.0.0.1:5999") is None


def test_state_dir_ignores_itself_in_git(tmp_path):
    d = project.state_dir(Path(tmp_path))
    assert (d / ".gitignore").read_text() == "*\n"
