"""GPU utilisation, memory and temperature through NVML, and GPU-loss detection.

Only active when the engine runs on CUDA. Not exercised on a GPU in this
project's CI (no GPU there); on CPU every method is a no-op, which the tests check.
"""

from __future__ import annotations

import logging

log = logging.getLogger("llmfleet.engine")


class GpuMonitor:
    def __init__(self, device_type: str):
        self._nvml = None
        self._handles: list = []
        if device_type != "cuda":
            return
        try:
            import pynvml  # from nvidia-ml-py

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except Exception as e:  # NVML missing in the image: metrics absent, serving unaffected
            log.warning("NVML unavailable; GPU metrics disabled", extra={"error": str(e)})
            self._nvml = None

    @property
    def enabled(self) -> bool:
        return self._nvml is not None

    def export(self, metrics) -> None:
        if not self._nvml:
            return
        nv = self._nvml
        for i, h in enumerate(self._handles):
            try:
                util = nv.nvmlDeviceGetUtilizationRates(h)
                mem = nv.nvmlDeviceGetMemoryInfo(h)
                temp = nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)
            except Exception:
                continue  # problem() reports a lost GPU through /health
            metrics.gpu_utilization.labels(gpu=str(i)).set(util.gpu / 100.0)
            metrics.gpu_memory_used.labels(gpu=str(i)).set(mem.used)
            metrics.gpu_temperature.labels(gpu=str(i)).set(temp)

    def problem(self) -> str | None:
        """A description of a lost or failed GPU, or None when all is well (or no GPU is used)."""
        if not self._nvml:
            return None
        nv = self._nvml
        for i, h in enumerate(self._handles):
            try:
                nv.nvmlDeviceGetMemoryInfo(h)
            except Exception as e:  # e.g. NVML_ERROR_GPU_IS_LOST after an Xid 79
                return f"GPU {i} is not responding: {e}"
        return None
