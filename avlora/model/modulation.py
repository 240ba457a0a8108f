"""The audio<->video cross-attention modulated as Lightricks' ltx-core does it, on diffusers' LTX-2
transformer.

ltx-core (`MultiModalTransformerArgsPreprocessor._prepare_cross_attention_timestep`) drives each
modality's cross-attention AdaLN from two inputs:

- scale/shift: the modality's *own* timesteps, per token (x timestep_scale_multiplier);
- gate: the *other* modality's sigma x av_ca_timestep_scale_multiplier.

diffusers' `LTX2VideoTransformer3DModel.forward` (0.42.1) feeds one input to both:
`use_cross_timestep=True` takes the other modality's sigma for the scale/shift too, `False` takes
the own timesteps for the gate too. Neither matches once the two modalities are at different noise
levels (v2a: video clean at 0, audio at sigma; av2av: reference tokens at 0 beside target tokens).

`modulate_as_ltx_core` makes a transformer (or a pipeline's) do as ltx-core without touching
diffusers' code or globals: three forward pre-hooks on that one instance. The hook on the
transformer records the call's `sigma`/`audio_sigma` (diffusers' fallbacks when absent: audio_sigma
-> sigma, sigma -> timestep) and sets `use_cross_timestep=False`, so the scale/shift modules get the
own per-token timesteps; the hooks on the two gate modules (`av_cross_attn_video_a2v_gate`,
`av_cross_attn_audio_v2a_gate`) replace their input by the other modality's sigma x
cross_attn_timestep_scale_multiplier / timestep_scale_multiplier (diffusers' timesteps and sigmas
are already x timestep_scale_multiplier). The trainer installs it on load (training, validation
loss, previews); diffusers users call it once on their pipeline before rendering with a LoRA from
avlora:

    pipe = LTX2Pipeline.from_pretrained(...)
    modulate_as_ltx_core(pipe)
    pipe.load_lora_weights("lora.safetensors")
"""

import torch

_INSTALLED = "_avlora_ltx_core_modulation"


def gate_factor(transformer) -> float:
    """cross_attn_timestep_scale_multiplier / timestep_scale_multiplier (ltx-core's av_ca_factor)."""
    config = transformer.config
    return config.cross_attn_timestep_scale_multiplier / config.timestep_scale_multiplier


def modulate_as_ltx_core(target) -> None:
    """Makes `target` (an `LTX2VideoTransformer3DModel`, or a pipeline with a `.transformer`)
    modulate the audio<->video cross-attention as ltx-core does (see the module's docstring).
    Idempotent; lasts as long as the transformer instance."""
    transformer = getattr(target, "transformer", target)
    if getattr(transformer, _INSTALLED, False):
        return
    sigmas: dict[str, torch.Tensor] = {}

    def record(module, args, kwargs):
        if args:
            raise TypeError("modulate_as_ltx_core: call the transformer with keyword arguments")
        video = kwargs.get("sigma")
        video = kwargs["timestep"] if video is None else video
        audio = kwargs.get("audio_sigma")
        sigmas["video"], sigmas["audio"] = video, video if audio is None else audio
        return args, kwargs | {"use_cross_timestep": False}

    def gate_from(other: str):
        def replace(module, args, kwargs):
            return (sigmas[other].flatten() * gate_factor(transformer), *args[1:]), kwargs
        return replace

    transformer.register_forward_pre_hook(record, with_kwargs=True)
    transformer.av_cross_attn_video_a2v_gate.register_forward_pre_hook(gate_from("audio"), with_kwargs=True)
    transformer.av_cross_attn_audio_v2a_gate.register_forward_pre_hook(gate_from("video"), with_kwargs=True)
    setattr(transformer, _INSTALLED, True)
