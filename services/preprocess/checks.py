"""The dry run: every dataset check (training clips and validation media) without encoding."""

from avlora.params import JobParams
from avlora.store import LocalFiles
from avlora.v1 import dataset_pb2
from services.preprocess.cancel import ShouldStop
from services.preprocess.plan import DatasetPlan, Progress, plan_dataset
from services.preprocess.validation import ValidationItem, plan_validation


def check_dataset(manifest: dataset_pb2.Manifest, params: JobParams, local: LocalFiles,
                  on_progress: Progress | None = None,
                  should_stop: ShouldStop | None = None) -> tuple[DatasetPlan, list[ValidationItem]]:
    """The training plan and the validation items; every error found is in plan.report.errors.
    `should_stop` is asked within each clip's probe and scene detection: JobCancelled when it says so."""
    plan = plan_dataset(manifest, params, local, on_progress, should_stop)
    validation, errors = plan_validation(manifest, plan.mode, local, should_stop)
    plan.report.errors.extend(errors)
    plan.report.ok = not plan.report.errors
    return plan, validation


def inspect_dataset(manifest: dataset_pb2.Manifest, params: JobParams, local: LocalFiles,
                    should_stop: ShouldStop | None = None) -> dataset_pb2.DatasetReport:
    """The report a real run would produce, without encoding anything."""
    plan, _ = check_dataset(manifest, params, local, should_stop=should_stop)
    return plan.report
