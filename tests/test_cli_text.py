"""What the CLI prints without a stack: help built from the schema, the "no stack found" advice,
JSON numbers, and the README's parameter tables matching the schema."""

import json

import pytest

from avlora import cli, docs
from avlora.params import MODES
from avlora.v1 import jobs_pb2, params_pb2


def help_text(capsys, *argv) -> str:
    with pytest.raises(SystemExit) as exited:
        cli.main([*argv, "--help"])
    assert exited.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines: compare words


def test_submit_help_states_each_parameters_meaning_range_and_values(capsys):
    text = help_text(capsys, "submit", "v2a")
    assert "--rank RANK LoRA rank: the adapter's capacity; one of 8, 16, 32, 64, 128 (default: 32)" in text
    assert "--number-of-steps NUMBER_OF_STEPS, --steps NUMBER_OF_STEPS optimizer steps; billed as max(100, steps) " \
           "units; 100 to 20000 (default: 2000)" in text
    assert "--resolution RESOLUTION training size bucket; with aspect_ratio 16:9 / 1:1 / 9:16: low 512x288 / " \
           "512x512 / 288x512, medium 768x448 / 768x768 / 448x768, high 960x544 / 960x960 / 544x960; one of " \
           "low, medium, high (default: medium)" in text
    assert "--aspect-ratio ASPECT_RATIO" in text and "one of 16:9, 1:1, 9:16 (default: 1:1)" in text
    assert "snapped down to frames % 8 == 1 (90 becomes 89)" in text and "9 to 121 (default: 89)" in text
    assert "--learning-rate LEARNING_RATE optimizer step size; > 0 and <= 1.0 (default: 0.0002)" in text
    assert "--validation PROMPT|VIDEO" in text and "--reference-downscale-factor" not in text
    assert "--auto-scale-input, --no-auto-scale-input retime clips shorter" in text
    av2av = help_text(capsys, "submit", "av2av")
    assert "--validation PROMPT|REFERENCE_VIDEO[|REFERENCE_AUDIO]" in av2av
    assert "--reference-temporal-scale-factor REFERENCE_TEMPORAL_SCALE_FACTOR keep every n-th reference frame" in av2av
    assert "1 to 8 (default: 1)" in av2av and "(default: True)" in av2av
    a2v = help_text(capsys, "submit", "a2v")
    assert "--validation PROMPT|AUDIO up to 2 preview samples, each a prompt and a sound to generate a video for" in a2v
    assert "--reference-downscale-factor" not in a2v
    modes = help_text(capsys, "submit")
    assert "v2a Video to audio (foley)" in modes and "av2av Audio+video to audio+video" in modes
    assert "a2v Audio to video" in modes


def test_every_flag_has_a_meaning_in_its_help(capsys):
    for mode, schema in MODES.items():
        text = help_text(capsys, "inspect", mode)
        for name, field in schema.model_fields.items():
            if name not in cli.NOT_FLAGS:
                assert f"--{name.replace('_', '-')}" in text
                assert " ".join(field.description.split()).replace("%%", "%") in text, name


def test_no_stack_found_says_how_to_point_to_one(tmp_path, monkeypatch, capsys):
    for variable in ("AVLORA_ADDR", "AVLORA_API_KEY", "AVLORA_DATA_DIR"):
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(SystemExit) as exited:
        cli.main(["--data-dir", str(tmp_path / "nowhere"), "status", "some-job"])
    message = str(exited.value.code)
    assert message.startswith(f"no stack found: {tmp_path / 'nowhere' / 'stack.json'} does not exist.")
    assert "`avlora up`" in message and "--data-dir DIR" in message and "AVLORA_DATA_DIR=DIR" in message
    assert "AVLORA_ADDR and AVLORA_API_KEY" in message


def test_json_output_writes_64_bit_integers_as_numbers():
    job = jobs_pb2.Job(id="j", billed_units=2**40 + 1, cost=1.5,
                       progress=jobs_pb2.Progress(stage="train", done=100, total=300),
                       params=params_pb2.JobParams(v2a=params_pb2.V2AParams(number_of_frames=89)))
    job.created_at.FromSeconds(0)
    data = json.loads(cli.to_json(job))
    assert data["billed_units"] == 2**40 + 1 and data["progress"]["done"] == 100 and data["progress"]["total"] == 300
    assert data["created_at"] == "1970-01-01T00:00:00Z" and data["params"]["v2a"]["number_of_frames"] == 89
    usage = json.loads(cli.to_json(jobs_pb2.Usage(total_units=7, lines=[jobs_pb2.UsageLine(units=3)])))
    assert usage["total_units"] == 7 and usage["lines"][0]["units"] == 3


def test_changes_made_by_the_server_are_named():
    job = jobs_pb2.Job(params=params_pb2.JobParams(v2a=params_pb2.V2AParams(
        number_of_frames=89, validation_number_of_frames=17, learning_rate=0.0002, rank=16)))
    sent = {"number_of_frames": 90, "validation_number_of_frames": 17, "learning_rate": 0.0002, "rank": 16,
            "training_data_url": "upload://x", "validation": []}
    assert cli.changed_by_server(sent, job) == ["number_of_frames 90 → 89"]


def test_generated_tables_are_the_schemas():
    for document in docs.DOCUMENTS:
        text = document.read_text()
        assert text == docs.with_tables(document, text), \
            f"{document.name} is stale: run `python -m avlora.docs --write`"
    for schema in MODES.values():
        for name in schema.model_fields:
            assert name == "mode" or f"| `{name}` |" in docs.README.read_text()
