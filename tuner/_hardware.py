"""What the probe runs on: every visible GPU (pynvml and torch), or the CPU with a memory budget.

A GPU's capacity is its total memory; the CPU's is a declared budget (``--memory-budget 4GiB``),
by default half of the memory available when asked, because a CPU "out of memory" is the kernel
killing the process, not an exception the probe can catch.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from typing import Any

import torch

from model import ConfigError
from stagetune_api import format_size
from stagetune_api import parse_size as _parse_size

log = logging.getLogger(__name__)

DEFAULT_CPU_SHARE = 0.5


def parse_size(text: str | int) -> int:
    """Bytes in ``4GiB``, ``512MiB``, ``1.5GB``, ``2000000``; a ``ConfigError`` names the text."""
    try:
        return _parse_size(text)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


@dataclass(frozen=True)
class Device:
    """One device a probe can run on. ``memory_bytes`` is what a probe may fill, and
    ``free_bytes`` the part of it free now: a GPU's free memory; for the CPU, its budget as far
    as the host's available memory holds it (never more than the budget)."""

    name: str  # "cuda:0" or "cpu"
    kind: str  # "cuda" or "cpu"
    model: str  # "NVIDIA H100 80GB HBM3", or the CPU's model name
    memory_bytes: int
    free_bytes: int | None
    bf16: bool
    compute_capability: str | None = None
    driver: str | None = None
    index: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Hardware:
    devices: tuple[Device, ...]
    cpu_count: int
    host_memory_bytes: int
    host_available_bytes: int | None = None  # the host's memory available now

    @property
    def gpus(self) -> tuple[Device, ...]:
        return tuple(d for d in self.devices if d.kind == "cuda")

    def to_json(self) -> dict[str, Any]:
        return {
            "devices": [d.to_json() for d in self.devices],
            "cpu_count": self.cpu_count,
            "host_memory_bytes": self.host_memory_bytes,
            "host_available_bytes": self.host_available_bytes,
        }


def discover(memory_budget: str | int | None = None) -> Hardware:
    """Every visible GPU, and the CPU with its budget (the probe's device when there is no GPU)."""
    total, available = _host_memory()
    budget = parse_size(memory_budget) if memory_budget is not None else None
    if budget is not None and budget > total:
        raise ConfigError(
            f"The value of `memory_budget` is {format_size(budget)}, but must be at most the "
            f"host's memory ({format_size(total)})."
        )
    memory = budget or int(available * DEFAULT_CPU_SHARE)
    cpu = Device(
        name="cpu",
        kind="cpu",
        model=_cpu_model(),
        memory_bytes=memory,
        free_bytes=min(memory, available),
        bf16=True,  # CPU autocast supports bf16; the trainer still defaults to fp32 there
    )
    return Hardware(
        devices=(*_gpus(), cpu),
        cpu_count=os.cpu_count() or 1,
        host_memory_bytes=total,
        host_available_bytes=available,
    )


def device_for(hardware: Hardware, name: str | None) -> Device:
    """The device called ``name`` (``cpu``, ``cuda``, ``cuda:N``); by default the first GPU."""
    if name in (None, "auto"):
        return hardware.gpus[0] if hardware.gpus else hardware.devices[-1]
    wanted = "cuda:0" if name == "cuda" else name
    for device in hardware.devices:
        if device.name == wanted:
            return device
    raise ConfigError(
        f"The value of `device` is {name!r}, but must be one of: "
        f"{', '.join(d.name for d in hardware.devices)}."
    )


def _gpus() -> list[Device]:
    if not torch.cuda.is_available():
        return []
    nvml = _nvml_devices()
    out = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        # NVML numbers all GPUs of the host; torch only the visible ones (CUDA_VISIBLE_DEVICES,
        # which Ray sets per trial), possibly in another order: match them by UUID.
        info = nvml.get(str(getattr(props, "uuid", "")), {})
        if "total" in info:
            free, total = info["free"], info["total"]
        else:  # no NVML: ask the runtime (this creates a CUDA context on the device)
            free, total = torch.cuda.mem_get_info(i)
        out.append(
            Device(
                name=f"cuda:{i}",
                kind="cuda",
                model=info.get("name", props.name),
                memory_bytes=int(total),
                free_bytes=int(free),
                bf16=props.major >= 8,  # Ampere and later
                compute_capability=f"{props.major}.{props.minor}",
                driver=info.get("driver"),
                index=i,
            )
        )
    return out


def _nvml_devices() -> dict[str, dict[str, Any]]:
    """Name, memory and driver of each GPU from NVML, by UUID; empty when NVML is not there."""
    try:
        import pynvml
    except ImportError:
        return {}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        log.debug("NVML unavailable: %s", exc)
        return {}
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        out = {}
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            uuid = pynvml.nvmlDeviceGetUUID(handle)
            uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
            out[uuid.removeprefix("GPU-")] = {
                "name": name.decode() if isinstance(name, bytes) else name,
                "total": mem.total,
                "free": mem.free,
                "driver": driver.decode() if isinstance(driver, bytes) else driver,
            }
        return out
    finally:
        pynvml.nvmlShutdown()


def _host_memory() -> tuple[int, int]:
    """(total, available) bytes of memory this process may use: the host's (/proc/meminfo),
    capped by the container's cgroup limit when there is one (Docker, Kubernetes)."""
    try:
        fields = {}
        with open("/proc/meminfo") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                fields[key] = int(rest.split()[0]) * 1024
        total, available = fields["MemTotal"], fields.get("MemAvailable", fields["MemFree"])
    except (OSError, KeyError, ValueError):
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        total = available = pages * size
    limit = _cgroup_limit()
    if limit is not None and limit < total:
        used = _cgroup_usage() or 0
        total, available = limit, min(available, max(0, limit - used))
    return total, available


_CGROUP_FILES = (  # (limit, usage): cgroup v2, then v1
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
)


def _read_int(path: str) -> int | None:
    try:
        with open(path) as handle:
            text = handle.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max" means no limit


def _cgroup_limit() -> int | None:
    for limit, _ in _CGROUP_FILES:
        value = _read_int(limit)
        if value is not None and value < 1 << 60:  # v1 reports "no limit" as a huge number
            return value
    return None


def _cgroup_usage() -> int | None:
    for limit, usage in _CGROUP_FILES:
        if _read_int(limit) is not None:
            return _read_int(usage)
    return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu"
