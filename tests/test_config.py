"""The one configuration loader: AVLORA_<PREFIX><FIELD> variables into frozen dataclasses."""

from pathlib import Path

import pytest

from avlora import config
from avlora.settings import Settings
from services.ingest.limits import IngestLimits


def test_settings_read_their_variables_and_keep_defaults():
    environ = {"AVLORA_STORE_URL": "s3://bucket/prefix", "AVLORA_ACK_WAIT_S": "2.5", "AVLORA_MAX_DELIVER": "",
               "AVLORA_DATA_DIR": "/srv/avlora", "AVLORA_SCRATCH_DIR": "/scratch"}
    settings = config.from_env(Settings, environ)
    assert settings.store_url == "s3://bucket/prefix" and settings.ack_wait_s == 2.5
    assert settings.max_deliver == 4  # empty: the default
    assert settings.data_dir == Path("/srv/avlora") and settings.scratch == "/scratch"
    assert config.from_env(Settings, {"AVLORA_DATA_DIR": "/srv/a"}).store_url == "/srv/a/store"


def test_a_bad_value_names_the_variable():
    with pytest.raises(ValueError, match=r"^AVLORA_INGEST_RETRIES='many': "):
        config.from_env(IngestLimits, {"AVLORA_INGEST_RETRIES": "many"})


def test_every_variable_is_listed_with_its_default():
    rows = {name: (default, meaning) for name, default, meaning
            in config.variables(Settings) + config.variables(IngestLimits)}
    assert rows["AVLORA_STORE_URL"][0] == "(unset)" and rows["AVLORA_MAX_DELIVER"][0] == "4"
    assert rows["AVLORA_INGEST_RETRIES"] == (str(IngestLimits.retries), "extra attempts after the first")
    assert all(meaning for _, meaning in rows.values()), [name for name, (_, m) in rows.items() if not m]


def test_trainer_options_come_from_the_same_loader():
    from services.trainer.training import TrainerOptions
    options = config.from_env(TrainerOptions, {"AVLORA_TRAIN_COMPILE": "0", "AVLORA_TRAIN_PROCESSES": "2",
                                               "AVLORA_TRAIN_MEMORY_MARGIN_GIB": "6.5"})
    assert (options.compile, options.processes, options.memory_margin_gib) == (False, 2, 6.5)
    assert config.from_env(TrainerOptions, {}).compile is None  # unset: decided by the device


def test_a_bad_speed_switch_is_named_at_start():
    from services.trainer.training import TrainerOptions
    with pytest.raises(ValueError, match=r"AVLORA_TRAIN_CHECKPOINT='al': budget, all, none or a number of blocks"):
        config.from_env(TrainerOptions, {"AVLORA_TRAIN_CHECKPOINT": "al"})
    with pytest.raises(ValueError, match=r"AVLORA_TRAIN_LORA_DTYPE='fp16': fp32 or bf16"):
        config.from_env(TrainerOptions, {"AVLORA_TRAIN_LORA_DTYPE": "fp16"})
