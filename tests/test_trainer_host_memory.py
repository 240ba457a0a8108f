"""The trainer's host memory does not grow with the number of clips: samples are read from the store
when a step needs them (services/trainer/data.py StoredSamples), not all loaded before the first step.
Each run is a fresh process (its peak RSS is its own); the training sets are written beforehand."""

import json
import subprocess
import sys
from pathlib import Path

from trainer_sets import build_random_set, make_params

from avlora.store import LocalStore

TESTS = Path(__file__).resolve().parent
SAMPLE_BYTES = (128 * 2 * 32 * 32 + 8 * 1024 * 16) * 4  # one clip's latents (1.5 MiB)

TRAIN = """
import json, resource, sys
sys.path.insert(0, {tests!r})
import torch
from trainer_sets import make_params
from avlora.settings import Settings
from avlora.stage import JobContext
from avlora.store import LocalStore
from services.trainer import stage
torch.set_num_threads(1)
store = LocalStore({store!r})
params = make_params("v2a").model_copy(update={{"number_of_steps": 6}})
ctx = JobContext.for_test("train", params, store, {uri!r}, stage="train",
                          settings=Settings(model_dir={model!r}, store={store!r}, data_dir={data!r}))
stage.run(ctx)
print(json.dumps({{"peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
"""


def _peak_rss(tmp_path: Path, model_dir: Path, clips: int) -> int:
    root = tmp_path / f"clips{clips}"
    store = LocalStore(root / "store")
    uri = build_random_set(store, model_dir, "set", make_params("v2a"), clips)
    env = {"AVLORA_TRAIN_DEVICE": "cpu", "AVLORA_TRAIN_SAMPLING_STEPS": "2", "AVLORA_TRAIN_VALIDATION_EVERY": "3",
           "AVLORA_TRAIN_CHECKPOINT_EVERY": "100", "PYTHONPATH": str(TESTS.parent), "PATH": "/usr/bin:/bin"}
    script = TRAIN.format(tests=str(TESTS), store=str(store.root), uri=uri, model=str(model_dir), data=str(root))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_kib"] * 1024


def test_host_memory_does_not_grow_with_the_number_of_clips(tmp_path, tiny_model_dir):
    few, many = _peak_rss(tmp_path, tiny_model_dir, 8), _peak_rss(tmp_path, tiny_model_dir, 64)
    # Loading every clip up front would add the 56 more clips' latents (84 MiB); allow a tenth of it.
    extra = 56 * SAMPLE_BYTES
    print(f"peak RSS: 8 clips {few / 2**20:.1f} MiB, 64 clips {many / 2**20:.1f} MiB "
          f"(all loaded would add {extra / 2**20:.0f} MiB)")
    assert many - few < extra / 10
