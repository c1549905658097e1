"""GPUs of a workstation shared among the jobs that run at once: each job that asks for N GPUs takes N
of them to itself.

Snakemake's ``gpu`` resource only counts GPUs: jobs it starts side by side each see every GPU of the
machine, and TensorFlow and JAX take every GPU they see (a TensorFlow job seeing four trains on all
four, with all their memory), so two such jobs on a four-GPU workstation fought over the same
cards. Before TensorFlow or JAX starts, a job claims GPUs by locking one file per GPU
(``fcntl.flock``, under LOCK_DIR, shared by every workflow of the user on the machine) and shows
only those (``CUDA_VISIBLE_DEVICES``). A lock lasts as long as the process holds the file open: a
killed job frees its GPUs, with no stale lock to clean. A job that finds too few free GPUs (a
profile that allows more GPUs than the machine has, or another workflow's jobs) waits for them,
all or none at once, so two jobs that each want two of three GPUs cannot each hold one forever.

Not under Slurm, whose jobs see the GPUs Slurm gave them. Imports neither TensorFlow nor JAX.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import re
import subprocess
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_DIR = Path(tempfile.gettempdir()) / f"avemotion-gpus-{os.getuid()}"
RETRY_S = (1.0, 3.0)  # a waiting job tries again after a random pause in this range
REPORT_EVERY_S = 300  # how often a waiting job says it still waits

# Files this process holds open, one per claimed GPU: closing one would free its GPU.
_HELD: list = []


def machine_gpus() -> list[str]:
    """The CUDA device indices this process may use: CUDA_VISIBLE_DEVICES where it is set, else one
    per GPU nvidia-smi lists (none where there is no NVIDIA driver)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [device.strip() for device in visible.split(",") if device.strip()]
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if listed.returncode != 0:
        return []
    return [str(index) for index in range(sum(line.startswith("GPU ") for line in listed.stdout.splitlines()))]


def claim_gpus(count: int, devices: list[str] | None = None, lock_dir: Path = LOCK_DIR) -> list[str]:
    """Claim ``count`` of ``devices`` (default: machine_gpus) for this process, waiting until that
    many are free, and show it only those (CUDA_VISIBLE_DEVICES); returns them. All of them where
    the machine has fewer (with a warning); none where it has no GPU."""
    devices = machine_gpus() if devices is None else list(devices)
    if not devices or count <= 0:
        return []
    if count > len(devices):
        log.warning("this job asks for %d GPUs and this machine shows %d: it takes all of them", count, len(devices))
        count = len(devices)
    lock_dir.mkdir(parents=True, exist_ok=True)
    started, reported = time.monotonic(), None
    while True:
        claimed = _try_claim(count, devices, lock_dir)
        if claimed:
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(claimed)
            log.info("GPU(s) %s of %s claimed after %.0f s", ",".join(claimed), ",".join(devices), time.monotonic() - started)
            return claimed
        if reported is None or time.monotonic() - reported >= REPORT_EVERY_S:
            log.warning("waiting for %d free GPU(s) of %s: jobs beside this one hold them (locks in %s)", count, ",".join(devices), lock_dir)
            reported = time.monotonic()
        time.sleep(random.uniform(*RETRY_S))


def _try_claim(count: int, devices: list[str], lock_dir: Path) -> list[str]:
    """``count`` free devices, locked and held by this process, or none (nothing held)."""
    taken = []
    for device in devices:
        handle = open(lock_dir / f"gpu-{_file_name(device)}.lock", "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        taken.append((device, handle))
        if len(taken) == count:
            _HELD.extend(handle for _, handle in taken)
            return [device for device, _ in taken]
    for _, handle in taken:
        handle.close()  # all or none: two jobs each holding part of what they need would wait forever
    return []


def _file_name(device: str) -> str:
    """A device index or UUID (GPU-..., MIG-...) as a file name."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", device)
