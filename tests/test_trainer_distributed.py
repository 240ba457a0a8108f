"""One job trained by two processes through torch.distributed.run (gloo, the tiny model on the CPU):
outputs, forwarded progress, averaged gradients, cancellation, resume, a failing rank."""

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from peft import get_peft_model_state_dict
from safetensors.torch import load_file
from trainer_sets import TrainerRun

from avlora.store import JobFiles
from avlora.modes import MODES
from avlora.model.components import load_for_training
from avlora.stage import JobCancelled
from services.trainer import stage
from services.trainer.data import load_sample, load_training_set, split_holdout
from services.trainer.distributed import World
from services.trainer.strategies import strategy_for
from services.trainer.training import Trainer, TrainerOptions

TRAINER_ENV = {"AVLORA_TRAIN_PROCESSES": "2", "AVLORA_TRAIN_DEVICE": "cpu", "AVLORA_TRAIN_CHECKPOINT_EVERY": "25",
       "AVLORA_TRAIN_VALIDATION_EVERY": "50", "AVLORA_TRAIN_PREVIEW_EVERY": "50",
       "AVLORA_TRAIN_SAMPLING_STEPS": "2"}


@pytest.fixture(scope="module")
def job(trainer_env, tmp_path_factory, tiny_model_dir):
    run = TrainerRun(tmp_path_factory.mktemp("distributed"), tiny_model_dir)
    ctx = run.context("job")
    return run, ctx, stage.run(ctx)


def _progress(ctx):
    return [e.progress for e in ctx.events if e.HasField("progress")]


def _processes_with(argument: str) -> list[int]:
    """The processes whose command line holds this argument."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and argument.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def test_two_processes_train_the_job_and_rank_0_reports(job):
    run, ctx, outputs = job
    progress = _progress(ctx)
    messages = [p.message for p in progress]
    assert "training on 2 processes" in messages
    steps = [p for p in progress if p.unit == "steps"]
    assert steps[-1].done == steps[-1].total == 100 and len(steps) > 1
    assert all(p.audio_loss > 0 and p.rate > 0 for p in steps)
    assert steps[-1].validation_loss < steps[-1].baseline_validation_loss
    assert torch.load(run.store.path(JobFiles("job").checkpoint), weights_only=True)["step"] == 100
    for uri in (outputs.lora_file, outputs.lora_comfyui_file, outputs.config_file, outputs.audio):
        assert run.store.path(uri).stat().st_size > 0
    # An intermediate preview, announced by name; the final one is the output.
    preview = "store://jobs/job/train/previews/step000050.wav"
    assert f"validation preview at step 50: {preview}" in messages
    assert sorted(p.name for p in (run.store.root / "jobs/job/train/previews").iterdir()) == ["step000050.wav"]
    with av.open(str(run.store.path(preview))) as container:
        samples = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=-1)
    assert samples.shape[-1] / 2 / 48000 == pytest.approx(9 / 24, abs=1e-3)


def test_the_ranks_average_their_gradients(job, tiny_model_dir):
    """The job's LoRA equals one process stepping on the mean of both ranks' gradients, each rank on
    its own clip and noise (which differ: one rank's gradient alone would give another LoRA)."""
    run, _, _ = job
    training_set = load_training_set(run.store, run.uri)
    samples = [load_sample(run.store, s.name, s.uri, MODES["v2a"].cache_keys) for s in training_set.samples]
    train_samples, held_out, _ = split_holdout(samples)
    model = load_for_training(tiny_model_dir)
    trainer = Trainer(run.context("reference"), model, strategy_for(run.params), train_samples, held_out,
                      training_set.frame_rate, TrainerOptions.from_env())
    ranks_differ = []
    for step in range(run.params.number_of_steps):
        shared = trainer.generator.get_state()
        for world in (World(0, 2), World(1, 2)):
            trainer.generator.set_state(shared)
            trainer.backward(world.step_generator(trainer.generator))
            if world.rank == 0:
                first = [p.grad.clone() for p in trainer.params]
        ranks_differ.append(any(not torch.allclose(2 * a, b, atol=1e-6) for a, b in
                                zip(first, (p.grad for p in trainer.params))))
        for param in trainer.params:
            param.grad /= 2
        trainer.apply(step)
    assert all(ranks_differ)
    expected = get_peft_model_state_dict(model.transformer)
    got = torch.load(run.store.path(JobFiles("job").checkpoint), weights_only=True)["lora"]
    assert expected.keys() == got.keys()
    assert all(torch.allclose(expected[k], got[k], atol=1e-5) for k in expected)


def test_cancel_stops_every_process_and_the_job_resumes(job):
    run, _, outputs = job
    ctx = run.context("cancelled-job")
    job_file = "train-cancelled-job-"  # the rank processes' job file is in a scratch folder named so
    emit, running = ctx.emit, []

    def cancel_after_a_checkpoint(event):  # checkpoints every 25 steps
        emit(event)
        if event.HasField("progress") and event.progress.done >= 30 and not ctx.cancelled():
            running.extend(_processes_with(job_file))
            ctx.cancel_flag.set()

    ctx.emit = cancel_after_a_checkpoint
    with pytest.raises(JobCancelled):
        stage.run(ctx)
    assert len(running) == 3  # the launcher and its two workers
    assert _processes_with(job_file) == []
    assert not run.store.exists("jobs/cancelled-job/outputs/outputs.pb")
    saved = torch.load(run.store.path(JobFiles("cancelled-job").checkpoint), weights_only=True)["step"]
    assert 25 <= saved < 100 and saved % 25 == 0

    again = run.context("cancelled-job", attempt=2)
    resumed = stage.run(again)
    assert f"resumed from the checkpoint at step {saved}" in [p.message for p in _progress(again)]
    assert min(p.done for p in _progress(again) if p.unit == "steps") > saved
    expected, got = load_file(run.store.path(outputs.lora_file)), load_file(run.store.path(resumed.lora_file))
    assert expected.keys() == got.keys()
    assert all(torch.allclose(expected[k], got[k], atol=1e-6) for k in expected)


def test_a_failing_rank_fails_the_job_with_its_error(job):
    run, _, _ = job
    ctx = run.context("broken-job", input_uri="store://jobs/missing/training_set.pb")
    with pytest.raises(RuntimeError, match=r"rank [01]: FileNotFoundError: .*jobs/missing/training_set\.pb"):
        stage.run(ctx)
