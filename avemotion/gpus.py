"""GPUs of a workstation shared among the jobs that run at once: each job that asks for N GPUs takes N
of them to itself (use_gpus: the training and prediction jobs, and ``avemotion predict --gpus``).

Snakemake's ``gpu`` resource only counts GPUs: jobs it starts side by side each see every GPU of the
machine, and TensorFlow and JAX take every GPU they see (a TensorFlow job seeing four trains on all
four, with all their memory), so two such jobs on a four-GPU workstation fought over the same
cards. Before TensorFlow or JAX starts, a job claims GPUs by locking one file per GPU
(``fcntl.flock``, in lock_dir(): /tmp/avemotion-gpus-<uid>, whatever TMPDIR a rule or a run was
given, so every workflow of the user on the machine shares it) and shows only those
(``CUDA_VISIBLE_DEVICES``). A lock lasts as long as the process holds the file open: a
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
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

# Not tempfile.gettempdir(): Snakemake sets TMPDIR to each job's tmpdir resource, which a profile may
# set per rule, and jobs with different folders took the same GPU.
LOCK_DIR_VARIABLE = "AVEMOTION_GPU_LOCKS"  # another folder (tests; a /tmp that is not the machine's)
RETRY_S = (1.0, 3.0)  # a waiting job tries again after a random pause in this range
REPORT_EVERY_S = 300  # how often a waiting job says it still waits

# (GPU, its lock file) for each GPU this process claimed: the file stays open, closing it frees the GPU.
_HELD: list[tuple] = []


class GpuClaimError(RuntimeError):
    pass


def use_gpus(count: int, gres: str = "") -> list[str] | None:
    """A job that asked for no GPU (``training.gpus: 0``, Snakemake's ``gpu`` resource, and no GPU in
    a Slurm ``gres``) computes on CPUs: its GPUs are hidden from TensorFlow and JAX, which must not
    have started yet (both take every GPU they see, and its memory, so such jobs running side by side
    on a workstation fought over one). A job that asked for N GPUs on a workstation takes N of the
    machine's GPUs to itself (claim_gpus), and a Slurm job sees those Slurm gives it. Returns the
    GPUs the process may use: [] for none (none asked for, or no NVIDIA driver), None where that is
    not ours to say (a Slurm job; nvidia-smi failed, and the job sees what CUDA finds)."""
    count = int(count or 0)
    if os.environ.get("SLURM_JOB_ID") or (not count and "gpu" in str(gres or "")):
        return None  # in a Slurm job, what the job was given is for Slurm to say (a shard, an extra sbatch option)
    devices = machine_gpus() if count else []
    if (devices or not count) and ("tensorflow" in sys.modules or "jax" in sys.modules):
        raise GpuClaimError(f"training.gpus: {count} asked for, but TensorFlow or JAX started first and took the GPUs")
    if count:
        claimed = claim_gpus(count, devices)
        return claimed if claimed or not has_nvidia_driver() else None
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    return []


def lock_dir() -> Path:
    return Path(os.environ.get(LOCK_DIR_VARIABLE) or f"/tmp/avemotion-gpus-{os.getuid()}")


def has_nvidia_driver() -> bool:
    """Whether this machine has an NVIDIA driver, which installs nvidia-smi."""
    return shutil.which("nvidia-smi") is not None


def machine_gpus() -> list[str]:
    """The CUDA devices this process may use: CUDA_VISIBLE_DEVICES where it is set, else one index
    per GPU nvidia-smi lists (none where there is no NVIDIA driver)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return visible_devices(visible)
    if not has_nvidia_driver():
        return []  # no GPU that TensorFlow or JAX could take either
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except OSError as error:  # there, but not a program this machine can run
        log.warning("nvidia-smi -L could not run (%s): this job claims no GPU and sees all of them", error)
        return []
    except subprocess.TimeoutExpired:
        log.warning("nvidia-smi -L did not answer in 60 s: this job claims no GPU and sees all of them")
        return []
    if listed.returncode != 0:
        log.warning("nvidia-smi -L failed (%s): this job claims no GPU and sees all of them", listed.stderr.strip()[-200:])
        return []
    return [str(index) for index in range(sum(line.startswith("GPU ") for line in listed.stdout.splitlines()))]


def visible_devices(value: str) -> list[str]:
    """CUDA_VISIBLE_DEVICES as CUDA reads it: indices or GPU-/MIG- UUIDs up to the first entry that is
    neither ("-1", "NoDevFiles": none after it), each once."""
    devices = []
    for entry in (part.strip() for part in value.split(",")):
        if not (entry.isdigit() or entry.startswith(("GPU-", "MIG-"))):
            break
        if entry not in devices:
            devices.append(entry)
    return devices


def claim_gpus(count: int, devices: list[str] | None = None) -> list[str]:
    """Claim ``count`` of ``devices`` (default: machine_gpus) for this process, waiting until that
    many are free, and show it only those (CUDA_VISIBLE_DEVICES); returns them. All of them where
    the machine has fewer (with a warning); none where it has no GPU. A process claims once: a
    second call returns what it holds."""
    if _HELD:
        return [device for device, _ in _HELD]
    devices = machine_gpus() if devices is None else list(dict.fromkeys(devices))
    if not devices or count <= 0:
        return []
    if count > len(devices):
        log.warning("this job asks for %d GPUs and this machine shows %d: it takes all of them", count, len(devices))
        count = len(devices)
    folder = _own_folder(lock_dir())
    started, reported = time.monotonic(), None
    while True:
        claimed = _try_claim(count, devices, folder)
        if claimed:
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(claimed)
            log.info("GPU(s) %s of %s claimed after %.0f s", ",".join(claimed), ",".join(devices), time.monotonic() - started)
            return claimed
        if reported is None or time.monotonic() - reported >= REPORT_EVERY_S:
            log.warning("waiting for %d free GPU(s) of %s: jobs beside this one hold them (locks in %s)", count, ",".join(devices), folder)
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
            _HELD.extend(taken)
            return [device for device, _ in taken]
    for _, handle in taken:
        handle.close()  # all or none: two jobs each holding part of what they need would wait forever
    return []


def _own_folder(folder: Path) -> Path:
    """``folder``, made private to this user where it is new; an error where it is a link or another
    user's (a shared /tmp: whoever made it first could hold or break every lock in it)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise PermissionError(f"{folder}: the GPU lock folder is not a folder of this user's; set {LOCK_DIR_VARIABLE} to one that is")
    return folder


def _file_name(device: str) -> str:
    """A device index or UUID (GPU-..., MIG-...) as a file name."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", device)
