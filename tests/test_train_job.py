"""Job files: TOML to okai.job/v1, field-level errors, the canonical digest, `okai train` exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import call_okai, run_okai
from okai.errors import DocumentError
from okai.manifest import BuiltinModel, JobSpec, ManifestRef
from okai.train import check_job, job_from_toml, job_to_toml, load_job

BLOB = "bNeKolxX6PVWET8KShTRa8V0A9AjINfQ--Hr1PFg4ls"
SHA = "sha256:" + "6c" * 32

GOOD = f"""
name = "digits"
seed = 7
procs_per_node = 2
checkpoint_every = 20

[model]
builtin = "digits-cnn"

[hyperparameters]
epochs = 3
batch_size = 16

[[datasets]]
manifest_blob_id = "{BLOB}"
sha256 = "{SHA}"
"""


def test_snake_case_toml_maps_onto_the_camel_case_job_document() -> None:
    job = job_from_toml(GOOD, "job.toml")
    assert job.to_json() == {
        "schema": "okai.job/v1",
        "name": "digits",
        "model": {"builtin": "digits-cnn"},
        "hyperparameters": {"epochs": 3, "batch_size": 16},
        "seed": 7,
        "deterministic": True,
        "datasets": [{"manifestBlobId": BLOB, "sha256": SHA}],
        "nodes": 1,
        "procsPerNode": 2,
        "checkpointEvery": 20,
        "outputFormat": "safetensors",
    }
    assert job_from_toml(job_to_toml(job), "again.toml") == job


def test_the_digest_is_of_the_canonical_form_not_the_file_layout() -> None:
    reordered = f"""
checkpoint_every = 20
procs_per_node = 2
[[datasets]]
sha256 = "{SHA}"
manifest_blob_id = "{BLOB}"
[hyperparameters]
batch_size = 16
epochs = 3
[model]
builtin = "digits-cnn"
"""
    # Top-level keys must precede tables in TOML; put them in a different order too.
    reordered = 'seed = 7\nname = "digits"\n' + reordered
    first, second = job_from_toml(GOOD, "a.toml"), job_from_toml(reordered, "b.toml")
    assert first.digest() == second.digest()
    assert first.digest() != first.model_copy(update={"seed": 8}).digest()


def test_a_job_loads_from_toml_or_from_its_json_document(tmp_path: Path) -> None:
    toml_path = tmp_path / "job.toml"
    toml_path.write_text(GOOD, encoding="utf-8")
    job = load_job(toml_path)
    json_path = tmp_path / "job.json"
    job.write(json_path)
    assert load_job(json_path) == job


@pytest.mark.parametrize(
    ("text", "field", "problem"),
    [
        ("name = \n", None, "not valid TOML"),
        (GOOD.replace("seed = 7", "seed = 7\ncolour = 'red'"), "colour", "unknown field"),
        (GOOD.replace("builtin =", "buildin ="), "model.buildin", "unknown field"),
        (GOOD.replace("sha256 =", "sha =", 1), "datasets.0.sha", "unknown field"),
        (GOOD.replace("procs_per_node = 2", "procs_per_node = 'two'"), "procs_per_node", "integer"),
        (GOOD.replace("seed = 7", "seed = -1"), "seed", "greater than or equal to 0"),
        (GOOD.replace(f'"{SHA}"', '"md5:abc"'), "datasets.0.sha256", "not a SHA-256 digest"),
        (GOOD.replace(BLOB, "not/a/blob"), "datasets.0.manifest_blob_id", "pattern"),
        (GOOD.split("[[datasets]]")[0], "datasets", "Field required"),
        ("datasets = []\n" + GOOD.split("[[datasets]]")[0], "datasets", "at least 1"),
        (GOOD.replace("procs_per_node", "procsPerNode"), "procsPerNode", "snake_case"),
        (
            GOOD.replace("batch_size = 16", "batch_size = [16]"),
            "hyperparameters.batch_size",
            "number",
        ),
        ('schema = "okai.job/v2"\n' + GOOD, "schema", "v2"),
        ('schema = "okai.dataset/v1"\n' + GOOD, "schema", "okai.dataset"),
    ],
)
def test_bad_job_files_name_the_file_and_field(text: str, field: str | None, problem: str) -> None:
    with pytest.raises(DocumentError) as caught:
        job_from_toml(text, "bad.toml")
    assert caught.value.source == "bad.toml"
    assert caught.value.field == field
    assert problem in caught.value.problem


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        (
            {"model": BuiltinModel(builtin="resnet-9000")},
            "model.builtin",
            "known: byte-gpt, digits-cnn",
        ),
        ({"hyperparameters": {"epochs": 0}}, "hyperparameters.epochs", "greater than or equal"),
        ({"hyperparameters": {"epoch": 3}}, "hyperparameters.epoch", "unknown field"),
    ],
)
def test_jobs_this_okai_cannot_train_are_refused_before_any_process_starts(
    change: dict[str, object], field: str, problem: str
) -> None:
    job = job_from_toml(GOOD, "job.toml").model_copy(update=change)
    with pytest.raises(DocumentError) as caught:
        check_job(job, "job.toml")
    assert (caught.value.field, problem in caught.value.problem) == (field, True)


def test_raw_blobs_need_a_digest_to_be_trained_on() -> None:
    text = GOOD.replace(f'manifest_blob_id = "{BLOB}"\nsha256 = "{SHA}"', f'blob_id = "{BLOB}"')
    with pytest.raises(DocumentError) as caught:
        check_job(job_from_toml(text, "job.toml"), "job.toml")
    assert caught.value.field == "datasets.0.sha256"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[model\n", "bad.toml: not valid TOML"),
        (GOOD.replace("seed = 7", "seed = 'seven'"), "bad.toml: field 'seed'"),
        (GOOD.replace("seed = 7", "sead = 7"), "bad.toml: field 'sead': unknown field"),
        (GOOD.split("[[datasets]]")[0], "bad.toml: field 'datasets': Field required"),
        (GOOD.replace("epochs = 3", "epochs = 0"), "bad.toml: field 'hyperparameters.epochs'"),
    ],
)
def test_okai_train_exits_2_on_a_bad_job_file(okai_home: Path, text: str, expected: str) -> None:
    (okai_home / "bad.toml").write_text(text, encoding="utf-8")
    (okai_home / "store" / "blobs").mkdir(parents=True)
    result = call_okai("train", "bad.toml", "--data", "store")
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert not (okai_home / "runs").exists()


def test_a_missing_job_file_is_a_usage_error(okai_home: Path) -> None:
    result = run_okai("train", "nowhere.toml", "--data", str(okai_home))
    assert result.returncode == 2
    assert "nowhere.toml: does not exist" in result.stderr


def test_the_demo_job_is_a_valid_trainable_job() -> None:
    from okai.train import digits_job

    job = digits_job((ManifestRef(manifest_blob_id=BLOB, sha256=SHA),))
    check_job(job, "demo")
    assert JobSpec.from_json_bytes(job.canonical_bytes(), "demo") == job
    assert job.deterministic and job.world_size == 2
