"""Plain encoding functions used by preprocessing (and by tests and previews).

Cached latents are in the transformer's space: normalised with the VAEs' latent statistics and
unpacked. Video: [128, F', H', W'] with F' = (F - 1) / 8 + 1, H' = H / 32, W' = W / 32. Audio:
[8, T', 16], 25 latents per second. Prompts are cached as Lightricks' process_captions caches
them: the text encoder's stacked hidden states through the connectors' feature extractor
(`TextProjection`), only the valid (unpadded) rows, plus the full-length mask (TEXT_LENGTH tokens,
left-padded, as Lightricks' Gemma tokenizer wrapper and diffusers' LTX2Pipeline pad them); the
trainer runs the rest of the connectors (`connect`). The tensor keys of the cache are in
avlora.model.cache."""

import math

import torch
from diffusers import LTX2Pipeline
from diffusers.pipelines.ltx2.connectors import per_token_rms_norm

from avlora.model.cache import PROMPT_AUDIO, PROMPT_MASK, PROMPT_VIDEO

AUDIO_SAMPLE_RATE = 16000
AUDIO_LATENTS_PER_SECOND = 25
MEL_BINS = 64
HOP_LENGTH = 160
N_FFT = 1024
# Prompts are padded to 1024 tokens (ltx-core TOKENIZER_MAX_LENGTH, diffusers max_sequence_length),
# never to tokenizer.model_max_length (often a 1e30 placeholder); the connectors need a multiple of
# their 128 registers.
TEXT_LENGTH = 1024


def audio_latent_count(num_frames: int, frame_rate: float) -> int:
    """Audio latents that cover `num_frames` video frames (what the pipelines generate)."""
    return round(num_frames / frame_rate * AUDIO_LATENTS_PER_SECOND)


@torch.no_grad()
def encode_video(vae, frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames [F, H, W, 3] (F % 8 == 1, H and W multiples of 32) -> latents [128, F', H', W']."""
    count, height, width, _ = frames.shape
    if (count - 1) % 8 or height % 32 or width % 32:
        raise ValueError(f"video of {count} frames at {width}x{height}: needs F % 8 == 1 and sides % 32 == 0")
    device, dtype = vae.device, vae.dtype
    video = frames.permute(3, 0, 1, 2).unsqueeze(0).to(device, dtype)  # one float copy, scaled in place
    video.div_(127.5).sub_(1.0)
    latents = vae.encode(video).latent_dist.mode()
    latents = LTX2Pipeline._normalize_latents(latents, vae.latents_mean, vae.latents_std,
                                              vae.config.scaling_factor)
    return latents[0]


@torch.no_grad()
def decode_video(vae, latents: torch.Tensor) -> torch.Tensor:
    """Normalised latents [128, F', H', W'] -> uint8 frames [F, H, W, 3]."""
    latents = LTX2Pipeline._denormalize_latents(latents.unsqueeze(0).to(vae.device, vae.dtype),
                                                vae.latents_mean, vae.latents_std, vae.config.scaling_factor)
    timestep = torch.zeros(1, device=vae.device, dtype=vae.dtype) if vae.config.timestep_conditioning else None
    video = vae.decode(latents, timestep, return_dict=False)[0][0]
    return ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).cpu()


def _hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    logstep = math.log(6.4) / 27.0
    return torch.where(hz < 1000.0, hz * 3.0 / 200.0, 15.0 + torch.log(hz.clamp(min=1e-9) / 1000.0) / logstep)


def _mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    logstep = math.log(6.4) / 27.0
    return torch.where(mel < 15.0, mel * 200.0 / 3.0, 1000.0 * torch.exp(logstep * (mel - 15.0)))


def mel_filterbank(n_freqs: int = N_FFT // 2 + 1, n_mels: int = MEL_BINS, f_max: float = 8000.0,
                   sample_rate: int = AUDIO_SAMPLE_RATE) -> torch.Tensor:
    """Triangular slaney-scale filters with slaney (area) normalisation: [n_freqs, n_mels]."""
    freqs = torch.linspace(0, sample_rate // 2, n_freqs, dtype=torch.float64)
    mel_points = torch.linspace(0.0, float(_hz_to_mel(torch.tensor(f_max, dtype=torch.float64))), n_mels + 2,
                                dtype=torch.float64)
    hz_points = _mel_to_hz(mel_points)
    widths = hz_points[1:] - hz_points[:-1]
    slopes = hz_points[None, :] - freqs[:, None]
    rising = -slopes[:, :-2] / widths[:-1]
    falling = slopes[:, 2:] / widths[1:]
    filters = torch.clamp(torch.minimum(rising, falling), min=0)
    filters *= (2.0 / (hz_points[2:] - hz_points[:-2]))[None, :]
    return filters.float()


def mel_spectrogram(waveform: torch.Tensor) -> torch.Tensor:
    """Stereo waveform [2, N] at 16 kHz -> log-mel [2, N // 160 + 1, 64] (Lightricks' front end)."""
    window = torch.hann_window(N_FFT, device=waveform.device)
    spectrum = torch.stft(waveform.float(), N_FFT, hop_length=HOP_LENGTH, win_length=N_FFT, window=window,
                          center=True, pad_mode="reflect", return_complex=True).abs()
    mel = spectrum.transpose(1, 2) @ mel_filterbank().to(waveform.device)
    return torch.log(mel.clamp(min=1e-5))


@torch.no_grad()
def encode_audio(audio_vae, waveform: torch.Tensor, num_latents: int | None = None) -> torch.Tensor:
    """Waveform [2, N] (or [1, N], duplicated) at 16 kHz -> normalised latents [8, T', 16], trimmed to
    `num_latents` when given (see audio_latent_count)."""
    if waveform.shape[0] == 1:
        waveform = waveform.repeat(2, 1)
    mel = mel_spectrogram(waveform.to(audio_vae.device)).unsqueeze(0).to(audio_vae.dtype)
    latents = audio_vae.encode(mel).latent_dist.mode()
    if num_latents is not None:
        if latents.shape[2] < num_latents:
            raise ValueError(f"audio gives {latents.shape[2]} latents, {num_latents} needed")
        latents = latents[:, :, :num_latents]
    _, _, length, mel_bins = latents.shape
    packed = LTX2Pipeline._pack_audio_latents(latents)
    packed = LTX2Pipeline._normalize_audio_latents(packed, audio_vae.latents_mean, audio_vae.latents_std)
    return LTX2Pipeline._unpack_audio_latents(packed, length, mel_bins)[0]


@torch.no_grad()
def decode_audio(audio_vae, vocoder, latents: torch.Tensor) -> torch.Tensor:
    """Normalised latents [8, T', 16] -> float waveform [2, samples] at vocoder.config.output_sampling_rate."""
    channels, length, mel_bins = latents.shape
    packed = LTX2Pipeline._pack_audio_latents(latents.unsqueeze(0).to(audio_vae.device, audio_vae.dtype))
    packed = LTX2Pipeline._denormalize_audio_latents(packed, audio_vae.latents_mean, audio_vae.latents_std)
    mel = audio_vae.decode(LTX2Pipeline._unpack_audio_latents(packed, length, mel_bins), return_dict=False)[0]
    return vocoder(mel.to(vocoder.dtype))[0].float().cpu()


def text_length(tokenizer, registers: int | None = None) -> int:
    """The padded prompt length: TEXT_LENGTH, or a smaller model's own maximum (the tiny model's 32,
    from its tokenizer directory); checked against the connectors' register count when given."""
    length = int(min(TEXT_LENGTH, tokenizer.model_max_length))
    if registers and length % registers:
        raise ValueError(f"text length {length} is not a multiple of the connectors' {registers} registers")
    return length


@torch.no_grad()
def encode_prompts(text_encoder, tokenizer, prompts: list[str],
                   length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts -> (stacked hidden states of every text-encoder layer [B, L, hidden * (layers + 1)],
    mask [B, L] int64), left-padded to `length` (default text_length(tokenizer)): what the connectors take."""
    tokenizer.padding_side = "left"
    tokens = tokenizer([p.strip() for p in prompts], padding="max_length", max_length=length or text_length(tokenizer),
                       truncation=True, add_special_tokens=True, return_tensors="pt")
    ids, mask = tokens.input_ids.to(text_encoder.device), tokens.attention_mask.to(text_encoder.device)
    hidden = text_encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    return torch.stack(hidden, dim=-1).flatten(2, 3), mask


class TextProjection(torch.nn.Module):
    """The first half of diffusers' LTX2TextConnectors.forward (LTX-2.3, per-modality projections):
    each token's stacked hidden states RMS-normalised, zeroed where padded, scaled per modality and
    projected to the video and audio connectors' widths (Lightricks' feature extractor). Only these
    two projections of the connectors are kept (preprocessing needs nothing else)."""

    def __init__(self, connectors):
        super().__init__()
        config = connectors.config
        if not config.per_modality_projections:
            raise ValueError("text connectors without per-modality projections (LTX-2.0) are not supported")
        self.video, self.audio = connectors.video_text_proj_in, connectors.audio_text_proj_in
        self.caption_channels = config.caption_channels
        self.video_scale = math.sqrt(config.video_hidden_dim / config.caption_channels)
        self.audio_scale = math.sqrt(config.audio_hidden_dim / config.caption_channels)

    @torch.no_grad()
    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(stacked hidden states [B, L, channels * layers], mask [B, L]) -> (video [B, L, Dv], audio [B, L, Da])."""
        normed = per_token_rms_norm(hidden.unflatten(2, (self.caption_channels, -1))).flatten(2, 3)
        normed = torch.where(mask.bool().unsqueeze(-1), normed, torch.zeros_like(normed))
        return self.video(normed * self.video_scale), self.audio(normed * self.audio_scale)


def connect(connectors, video: torch.Tensor, audio: torch.Tensor,
            mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The second half of LTX2TextConnectors.forward, from TextProjection's features: (video
    embeddings, audio embeddings, binary mask), what the transformer takes."""
    additive = (mask.to(torch.int64) - 1).to(video.dtype).reshape(mask.shape[0], 1, -1, mask.shape[-1])
    additive = additive * torch.finfo(video.dtype).max
    video_embeds, video_mask = connectors.video_connector(video, additive)
    binary = (video_mask < 1e-6).to(torch.int64).reshape(video_embeds.shape[0], video_embeds.shape[1], 1)
    audio_embeds, _ = connectors.audio_connector(audio, additive)
    return video_embeds * binary, audio_embeds, binary.squeeze(-1)


def prompt_to_cache(video: torch.Tensor, audio: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """One prompt's features (video [L, Dv], audio [L, Da], mask [L]) -> the cache's prompt keys:
    the valid rows only, and the mask."""
    valid = mask.bool()
    return {PROMPT_VIDEO: video[valid].contiguous().cpu(), PROMPT_AUDIO: audio[valid].contiguous().cpu(),
            PROMPT_MASK: mask.to(torch.int64).cpu()}


def prompt_from_cache(tensors: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The inverse of prompt_to_cache: (video [1, L, Dv], audio [1, L, Da], mask [1, L]), padded rows
    zero (the connectors replace them with their learned registers)."""
    mask = tensors[PROMPT_MASK]

    def padded(rows: torch.Tensor) -> torch.Tensor:
        full = rows.new_zeros(mask.shape[0], rows.shape[-1])
        full[mask.bool()] = rows
        return full.unsqueeze(0)

    return padded(tensors[PROMPT_VIDEO]), padded(tensors[PROMPT_AUDIO]), mask.unsqueeze(0)
