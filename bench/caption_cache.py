"""Host memory of one cached caption at the real size, computed from the configuration (no model
needed): LTX-2.3's text connectors (bench/real_job.py REAL_CONNECTORS, Gemma-3-12B's 48 layers + the
embeddings, 3840 wide) in bf16, before (cache format 1: every stacked hidden state) and after
(format 2: the connectors' projected features, as Lightricks' process_captions caches them).

    python bench/caption_cache.py     # one JSON line
"""

import json

from real_job import REAL_CONNECTORS

BF16_BYTES = 2


def caption_bytes(connectors: dict, tokens: int) -> dict:
    before = connectors["caption_channels"] * connectors["text_proj_in_factor"] * BF16_BYTES
    after = (connectors["video_hidden_dim"] + connectors["audio_hidden_dim"]) * BF16_BYTES
    return {"bytes_per_token_before": before, "bytes_per_token_after": after,
            "ratio": round(after / before, 4), "tokens": tokens,
            "mb_per_caption_before": round(before * tokens / 1e6, 1),
            "mb_per_caption_after": round(after * tokens / 1e6, 2)}


if __name__ == "__main__":
    for tokens in (128, 1024):  # a typical caption; the 1024-token limit
        print(json.dumps(caption_bytes(REAL_CONNECTORS, tokens)))
