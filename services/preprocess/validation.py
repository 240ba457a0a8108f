"""Validation media (fetched by ingest into the Manifest's validation list), checked by the job's
mode (`services.preprocess.modes`) and fitted at the validation settings. A validation clip is
always fitted to validation_number_of_frames at validation_frame_rate as if auto_scale_input were
on (its first seconds when long enough, slowed down to fill the frames when shorter): a preview is
never refused for its length."""

from avlora.store import LocalFiles
from avlora.v1 import dataset_pb2
from avlora.stage import UserError
from services.preprocess.cancel import ShouldStop
from services.preprocess.items import ValidationItem
from services.preprocess.modes import Preprocessing


def plan_validation(manifest: dataset_pb2.Manifest, mode: Preprocessing, local: LocalFiles,
                    should_stop: ShouldStop | None = None) -> tuple[list[ValidationItem], list[str]]:
    """The validation items and one error per unusable entry (each names the entry and its URL)."""
    items, errors = [], []
    for media in manifest.validation:
        try:
            items.append(mode.validation_item(media, local, should_stop))
        except UserError as error:
            errors.append(str(error))
    return items, errors
