"""fp8 base weights (AVLORA_TRAIN_FP8, off by default): the frozen linear layers of the transformer
blocks keep their weights in float8 e4m3 with one scale per output channel, and multiply in fp8
(`torch._scaled_mm`) with each token's activations quantised to e4m3 on the fly (one scale per
token). The weights take half the memory of bf16 (more blocks fit without checkpointing) and the
GEMMs can run on fp8 tensor cores; compiled blocks can fuse the activations' quantisation into the
ops before it (not yet measured on a GPU). The LoRA's own weights and every other parameter keep
their dtype, so the LoRA files have the same form; the validation losses and previews are computed
with the fp8 base weights too. The input's gradient (through which the LoRA of earlier layers
learns) is computed with the weight dequantised to the gradient's dtype.

The converted layers are for training only: they must not be cast with `module.to(dtype)` (the
fp8 buffers would lose their meaning) nor merged by peft (its merge adds into `weight` without the
scale)."""

import torch

E4M3 = torch.float8_e4m3fn
E4M3_MAX = torch.finfo(E4M3).max  # 448
MULTIPLE = 16                     # _scaled_mm needs both dimensions of the weight divisible by 16


def quantize_rows(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(values in e4m3, fp32 scales [rows, 1]) with values ~= e4m3 * scale, one scale per row."""
    scale = values.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-12) / E4M3_MAX
    return (values.float() / scale).to(E4M3).contiguous(), scale


class _Fp8MatMul(torch.autograd.Function):
    """x [tokens, in] @ weight.T, in fp8; the gradient flows to x only (the weight is frozen)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor) -> torch.Tensor:
        quantized, scale = quantize_rows(x)  # row-major, as _scaled_mm's first operand must be
        ctx.save_for_backward(weight, weight_scale)
        return torch._scaled_mm(quantized, weight.t(), scale_a=scale, scale_b=weight_scale.t(), out_dtype=x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        weight, weight_scale = ctx.saved_tensors
        return grad @ (weight.float() * weight_scale).to(grad.dtype), None, None


class Fp8Linear(torch.nn.Module):
    """A frozen nn.Linear whose weight is stored and multiplied in fp8."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight, scale = quantize_rows(linear.weight.detach())
        self.register_buffer("weight", weight)
        self.register_buffer("weight_scale", scale)
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """In the dtype F.linear would give: autocast's, else the input's. On a GPU the product is
        taken in bf16 (row-wise scaled fp8 GEMMs give bf16 only)."""
        autocast = x.is_cuda and torch.is_autocast_enabled("cuda")
        dtype = torch.get_autocast_dtype("cuda") if autocast else x.dtype
        rows = x.reshape(-1, self.in_features).to(torch.bfloat16 if x.is_cuda else dtype)
        out = _Fp8MatMul.apply(rows, self.weight, self.weight_scale).reshape(*x.shape[:-1], self.out_features)
        out = out.to(dtype)
        return out if self.bias is None else out + self.bias.to(dtype)


def convertible(module: torch.nn.Module) -> bool:
    return (type(module) is torch.nn.Linear and not module.weight.requires_grad
            and module.in_features % MULTIPLE == 0 and module.out_features % MULTIPLE == 0)


def use_fp8_weights(transformer) -> int:
    """Replaces the frozen linear layers of every transformer block (LoRA base layers included) by
    Fp8Linear; returns how many. Call after the LoRA is added (peft wraps nn.Linear only)."""
    replaced = 0
    for block in transformer.transformer_blocks:
        for parent in list(block.modules()):
            for name, child in list(parent.named_children()):
                if convertible(child):
                    setattr(parent, name, Fp8Linear(child))
                    replaced += 1
    return replaced
