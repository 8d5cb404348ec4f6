"""numba, imported with 512-bit vectors where the CPU has AVX-512 (for the engine's compiled loops).

LLVM prefers 256-bit vectors on Intel CPUs that have AVX-512 (to keep their clock up). The engine's
loops (engine/onepass_loops.py, engine/lstm_loops.py) are mostly float64 sums of float32 data, and
512-bit vectors take them in 20-40 % less time: per 256 x 256 float32, the SGD step with its norms
24.7-34 -> 20.5 us, the sigmoid moments 36 -> 25.5 us (2026-12-01, best of 5 rounds). torch's own
matrix products already run AVX-512 in the training process, so the core runs at that clock anyway.

``import numba`` goes through here: the preference is turned off with NUMBA_CPU_FEATURES for
numba's import only (it reads its settings once; child processes do not inherit it). Where numba
was imported before, or NUMBA_CPU_FEATURES is set, numba's own settings stay.
"""
import os
import sys


def _wide_vectors() -> str | None:
    """The host's CPU features with the 256-bit preference off, where it has AVX-512; else None."""
    if "numba" in sys.modules or "NUMBA_CPU_FEATURES" in os.environ:
        return None
    try:
        import llvmlite.binding as llvm
        features = llvm.get_host_cpu_features().flatten()
    except Exception:   # (an llvmlite without it: numba's defaults)
        return None
    return features + ",-prefer-256-bit" if "+avx512f" in features.split(",") else None


_features = _wide_vectors()
if _features:
    os.environ["NUMBA_CPU_FEATURES"] = _features
try:
    import numba  # noqa: E402
finally:
    if _features:
        os.environ.pop("NUMBA_CPU_FEATURES", None)

__all__ = ["numba"]
