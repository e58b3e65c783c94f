"""The job record's JSON form: the shape ``GET /v1/jobs/{id}`` has always answered with."""

from gloss_gen.data.classsets import load_class_set
from gloss_gen.data.descriptions import DescriptionRecord
from gloss_gen.data.job_records import MAX_LISTED_ERRORS, JobRecord


def test_new_job_json_and_back():
    job = JobRecord.new("j1", "class-set", load_class_set("cifar10"), "wordnet", model="vgloss-tiny/none")
    data = job.to_json()
    assert set(data) == {"id", "kind", "state", "class_set", "method", "total", "done", "failed", "errors",
                         "created_at", "updated_at", "model"}
    assert (data["state"], data["class_set"], data["total"], data["done"], data["errors"]) == \
        ("queued", "cifar10", 10, 0, [])
    assert JobRecord.from_bytes(job.to_bytes()) == job


def test_counting_classes_and_failures():
    job = JobRecord(id="j", kind="describe", class_set="c", method="vgloss", total=MAX_LISTED_ERRORS + 5)
    for i in range(MAX_LISTED_ERRORS + 2):
        job.count(DescriptionRecord(class_id=f"c{i}", name=f"c {i}", synset=None, method="vgloss",
                                    error="HTTP 500"))
    job.count(DescriptionRecord(class_id="ok", name="ok", synset=None, method="vgloss", descriptions=["x"]))
    assert (job.state, job.done, job.failed, len(job.errors)) == \
        ("running", MAX_LISTED_ERRORS + 3, MAX_LISTED_ERRORS + 2, MAX_LISTED_ERRORS)
    job.mark("done", classifier="k", finished_at="now")
    assert job.finished and job.to_json()["classifier"] == "k"
