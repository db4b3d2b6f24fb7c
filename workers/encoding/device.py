"""Where and in which precision the encoder runs, decided once per process.

CUDA with fp16 weights when a GPU is present; otherwise the CPU in fp32, or in
bf16 when asked (CLIP_BF16=1). bf16 pays off only on CPUs with native bf16
instructions (AVX512_BF16 or AMX); without them bf16 matmuls are emulated and
slower than fp32, so asking for bf16 there logs a warning (bench/encode_bench.py
measures both).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Placement:
    """The chosen device and weight dtype, and whether to torch.compile the towers."""

    device: torch.device
    dtype: torch.dtype
    compile: bool = False

    def describe(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.")
        return f"{self.device.type} {dtype}" + (" compiled" if self.compile else "")


def cpu_supports_bf16() -> bool:
    """Whether the CPU has native bf16 instructions; without them bf16 matmuls are
    emulated and slower than fp32."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            flags = fh.read()
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def choose_placement(
    device: str | torch.device | None = None, *, bf16: bool = False, compile: bool = False
) -> Placement:
    """CUDA + fp16 when available (unless `device` says otherwise), else CPU fp32.

    `bf16=True` asks for bf16 weights on the CPU; it is honoured even on a CPU
    without native support (it still works, only slower), since the caller asked.
    """
    if device is None:
        chosen = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        chosen = torch.device(device)
    if chosen.type == "cuda":
        return Placement(chosen, torch.float16, compile)
    if bf16 and chosen.type == "cpu" and not cpu_supports_bf16():
        log.warning(
            "bf16 weights requested on a CPU without native bf16: expect it slower than fp32"
        )
    return Placement(chosen, torch.bfloat16 if bf16 else torch.float32, compile)
