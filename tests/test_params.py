"""Every seed parameter with its default, range and enum; snapping; the reference-factor rules."""

import pytest

from avlora.modes import MODES
from avlora.params import (DEFAULT_NEGATIVE_PROMPT, RESOLUTION_BUCKETS, A2VParams, AV2AVParams, InvalidParams,
                           V2AParams, from_proto, snap_frames, to_proto)
from avlora.v1 import params_pb2

URL = "https://example.com/clips.zip"

# Transcribed from shared/seeds: parameter -> default.
COMMON_DEFAULTS = {
    "trigger_phrase": "", "rank": 32, "number_of_steps": 2000, "learning_rate": 0.0002, "number_of_frames": 89,
    "frame_rate": 24, "resolution": "medium", "aspect_ratio": "1:1", "auto_scale_input": False,
    "split_input_into_scenes": False, "split_input_duration_threshold": 30.0,
    "validation_negative_prompt": DEFAULT_NEGATIVE_PROMPT, "validation_number_of_frames": 89,
    "validation_frame_rate": 24, "validation_resolution": "high", "validation_aspect_ratio": "1:1",
    "stg_scale": 1.0, "debug_dataset": False,
}
# a2v is beyond the seeds: Lightricks' a2v_lora.yaml (optimization.learning_rate: 1e-4).
A2V_DEFAULTS = COMMON_DEFAULTS | {"learning_rate": 0.0001}
AV2AV_DEFAULTS = COMMON_DEFAULTS | {"reference_downscale_factor": 1, "reference_temporal_scale_factor": 1,
                                    "audio_normalize": True, "audio_preserve_pitch": True}


def v2a(**fields):
    return from_proto(params_pb2.JobParams(v2a=params_pb2.V2AParams(training_data_url=URL, **fields)))


def av2av(**fields):
    return from_proto(params_pb2.JobParams(av2av=params_pb2.AV2AVParams(training_data_url=URL, **fields)))


def a2v(**fields):
    return from_proto(params_pb2.JobParams(a2v=params_pb2.A2VParams(training_data_url=URL, **fields)))


@pytest.mark.parametrize("build, defaults, message", [
    (v2a, COMMON_DEFAULTS, params_pb2.V2AParams), (av2av, AV2AV_DEFAULTS, params_pb2.AV2AVParams),
    (a2v, A2V_DEFAULTS, params_pb2.A2VParams)])
def test_every_seed_parameter_has_its_default(build, defaults, message):
    params = build()
    for name, default in defaults.items():
        assert getattr(params, name) == default, name
    assert params.validation == []
    proto_fields = {field.name for field in message.DESCRIPTOR.fields}
    assert proto_fields == set(defaults) | {"training_data_url", "validation"}
    echoed = getattr(to_proto(params), params.mode)
    for name in defaults:
        assert echoed.HasField(name), f"the job reports {name}"


def test_resolution_table_is_the_seeds():
    assert RESOLUTION_BUCKETS[("low", "16:9")] == (512, 288)
    assert RESOLUTION_BUCKETS[("medium", "9:16")] == (448, 768)
    assert RESOLUTION_BUCKETS[("high", "1:1")] == (960, 960)
    assert len(RESOLUTION_BUCKETS) == 9
    assert v2a().size == (768, 768) and v2a().validation_size == (960, 960)


@pytest.mark.parametrize("frames, snapped", [(89, 89), (90, 89), (96, 89), (97, 97), (9, 9), (16, 9), (121, 121)])
def test_frames_snap_down_to_8k_plus_1(frames, snapped):
    assert snap_frames(frames) == snapped
    params = v2a(number_of_frames=frames, validation_number_of_frames=frames)
    assert (params.number_of_frames, params.validation_number_of_frames) == (snapped, snapped)
    assert to_proto(params).v2a.number_of_frames == snapped


@pytest.mark.parametrize("fields, field", [
    ({"rank": 7}, "rank"), ({"rank": 256}, "rank"),
    ({"number_of_steps": 99}, "number_of_steps"), ({"number_of_steps": 20001}, "number_of_steps"),
    ({"number_of_frames": 8}, "number_of_frames"), ({"number_of_frames": 122}, "number_of_frames"),
    ({"frame_rate": 7}, "frame_rate"), ({"frame_rate": 61}, "frame_rate"),
    ({"resolution": "ultra"}, "resolution"), ({"aspect_ratio": "4:3"}, "aspect_ratio"),
    ({"split_input_duration_threshold": 0.5}, "split_input_duration_threshold"),
    ({"split_input_duration_threshold": 61}, "split_input_duration_threshold"),
    ({"validation_number_of_frames": 200}, "validation_number_of_frames"),
    ({"validation_frame_rate": 100}, "validation_frame_rate"),
    ({"validation_resolution": "4k"}, "validation_resolution"),
    ({"validation_aspect_ratio": "2:1"}, "validation_aspect_ratio"),
    ({"stg_scale": 3.5}, "stg_scale"), ({"stg_scale": -0.1}, "stg_scale"),
    ({"learning_rate": 0}, "learning_rate"),
])
def test_out_of_range_values_name_the_field(fields, field):
    for build in (v2a, av2av):
        with pytest.raises(InvalidParams, match=field):
            build(**fields)


def test_training_data_url_is_required_and_must_be_a_url():
    with pytest.raises(InvalidParams, match="training_data_url"):
        from_proto(params_pb2.JobParams(v2a=params_pb2.V2AParams()))
    with pytest.raises(InvalidParams, match="training_data_url"):
        from_proto(params_pb2.JobParams(v2a=params_pb2.V2AParams(training_data_url="/etc/passwd")))
    with pytest.raises(InvalidParams, match="exactly one of v2a or av2av or a2v"):
        from_proto(params_pb2.JobParams())


def test_validation_entries_at_most_two_with_their_urls():
    entry = params_pb2.V2AValidation(prompt="steps", video_url="https://example.com/a.mp4")
    assert len(v2a(validation=[entry, entry]).validation) == 2
    with pytest.raises(InvalidParams, match="validation"):
        v2a(validation=[entry, entry, entry])
    with pytest.raises(InvalidParams, match="video_url"):
        v2a(validation=[params_pb2.V2AValidation(prompt="no video")])
    with pytest.raises(InvalidParams, match="reference_video_url"):
        av2av(validation=[params_pb2.AV2AVValidation(prompt="no reference")])
    ok = av2av(validation=[params_pb2.AV2AVValidation(prompt="p", reference_video_url="https://e.com/r.mp4")])
    assert ok.validation[0].reference_audio_url is None


def test_seed_example_temporal_factor_2_at_89_frames_is_refused():
    with pytest.raises(InvalidParams, match=r"reference_temporal_scale_factor: 2 .*number_of_frames=89"):
        av2av(reference_temporal_scale_factor=2)


@pytest.mark.parametrize("factor, frames, ok", [
    (2, 97, True), (2, 81, True), (4, 97, True), (4, 89, False), (8, 65, True), (8, 121, False), (3, 49, True),
    (3, 97, True), (3, 89, False)])
def test_temporal_factor_checked_against_both_frame_counts(factor, frames, ok):
    fields = dict(reference_temporal_scale_factor=factor, number_of_frames=frames, validation_number_of_frames=frames)
    if ok:
        assert av2av(**fields).reference_temporal_scale_factor == factor
    else:
        with pytest.raises(InvalidParams, match="reference_temporal_scale_factor"):
            av2av(**fields)
    # The validation frame count is checked too, even when the training count fits.
    if ok and factor > 1:
        with pytest.raises(InvalidParams, match="validation_number_of_frames"):
            av2av(reference_temporal_scale_factor=factor, number_of_frames=frames, validation_number_of_frames=frames + 8)


@pytest.mark.parametrize("factor, resolution, aspect, ok", [
    (2, "medium", "1:1", True),    # 768x768 -> 384x384; validation 960x960 -> 480x480
    (3, "medium", "1:1", True),    # 256x256 and 320x320: multiples of 32
    (3, "medium", "16:9", False),  # 448 / 3 is not whole
    (4, "medium", "1:1", False),   # validation 960 / 4 = 240, not a multiple of 32
    (5, "low", "1:1", False),      # 512 is not divisible by 5
    (8, "low", "1:1", False),      # validation 960 / 8 = 120, not a multiple of 32
])
def test_downscale_factor_checked_against_training_and_validation_resolution(factor, resolution, aspect, ok):
    fields = dict(reference_downscale_factor=factor, resolution=resolution, aspect_ratio=aspect)
    if ok:
        assert av2av(**fields).reference_downscale_factor == factor
    else:
        with pytest.raises(InvalidParams, match=f"reference_downscale_factor: {factor} does not fit"):
            av2av(**fields)


def test_validation_resolution_alone_can_refuse_a_downscale_factor():
    with pytest.raises(InvalidParams, match="validation resolution 960x544"):
        av2av(reference_downscale_factor=2, resolution="medium", aspect_ratio="1:1", validation_aspect_ratio="16:9")
    assert av2av(reference_downscale_factor=2, validation_resolution="medium").reference_downscale_factor == 2


def test_scene_splitting_refused_for_av2av_allowed_for_v2a():
    with pytest.raises(InvalidParams, match="split_input_into_scenes: not available for av2av"):
        av2av(split_input_into_scenes=True)
    assert v2a(split_input_into_scenes=True).split_input_into_scenes is True


@pytest.mark.parametrize("build, model", [(v2a, V2AParams), (av2av, AV2AVParams), (a2v, A2VParams)])
def test_nan_and_infinity_are_named_as_such(build, model):
    floats = [name for name, field in model.model_fields.items() if field.annotation is float]
    assert {"learning_rate", "split_input_duration_threshold", "stg_scale"} <= set(floats)
    for name in floats:
        with pytest.raises(InvalidParams) as refused:
            build(**{name: float("nan")})
        assert str(refused.value) == f"{name}: NaN is not a number"
        with pytest.raises(InvalidParams) as refused:
            build(**{name: float("inf")})
        assert str(refused.value) == f"{name}: Infinity is not a finite number"


def test_the_table_of_modes():
    """Each mode's roles, conditioning, preview and price (fal's prices per step)."""
    rows = {name: (mode.roles, mode.pairs, mode.conditioning, mode.cache_keys.validation, mode.preview,
                   mode.unit_price) for name, mode in MODES.items()}
    assert rows == {
        "v2a": ({"video": "frozen", "audio": "generated"}, False, ("video",), ("video_latents",),
                ("audio", ".wav"), 0.0049),
        "av2av": ({"video": "generated", "audio": "generated"}, True, ("ref_video", "ref_audio"),
                  ("ref_video_latents", "ref_audio_latents"), ("video", ".mp4"), 0.0068),
        "a2v": ({"video": "generated", "audio": "frozen"}, False, ("audio",), ("audio_latents",),
                ("video", ".mp4"), 0.006),
    }
    assert a2v(validation=[params_pb2.A2VValidation(prompt="p", audio_url="https://e.com/a.wav")]).validation[0].media() \
        == {"audio": "https://e.com/a.wav"}
    with pytest.raises(InvalidParams, match="validation.0.audio_url"):
        a2v(validation=[params_pb2.A2VValidation(prompt="no sound")])
