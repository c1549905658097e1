"""Training and prediction jobs running side by side on a workstation each take their own GPUs
(avemotion.gpus), in separate processes as Snakemake starts them."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from avemotion.gpus import GpuClaimError, use_gpus

ROOT = Path(__file__).resolve().parents[1]
_STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def no_job_outlives_its_test():
    yield
    while _STARTED:
        process = _STARTED.pop()
        process.kill()
        process.communicate()


def job(tmp_path: Path, code: str, **env) -> subprocess.Popen:
    """A process that runs ``code`` after ``from avemotion import gpus``; its GPU
    locks in ``tmp_path``/locks (unless ``env`` says otherwise), and ``bin`` there first on PATH."""
    script = "import os, sys, time\nfrom avemotion import gpus\n" + textwrap.dedent(code)
    environment = {name: value for name, value in os.environ.items() if name != "SLURM_JOB_ID"}
    environment.update(AVEMOTION_GPU_LOCKS=str(tmp_path / "locks"), PYTHONPATH=str(ROOT), PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    environment.update(env)
    environment = {name: value for name, value in environment.items() if value is not None}
    process = subprocess.Popen([sys.executable, "-c", script], env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _STARTED.append(process)
    return process


def fake_nvidia_smi(tmp_path: Path, gpus: int) -> None:
    """nvidia-smi -L as a machine with ``gpus`` GPUs answers."""
    tool = tmp_path / "bin" / "nvidia-smi"
    tool.parent.mkdir(exist_ok=True)
    lines = "\n".join(f"GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-{i:08d}-0000-0000-0000-000000000000)" for i in range(gpus))
    tool.write_text(f"#!/bin/sh\ncat <<'EOF'\n{lines}\nEOF\n")
    tool.chmod(0o755)


def first_line(process: subprocess.Popen, timeout: float = 30) -> str:
    """The first line the process prints, within ``timeout`` seconds (a job that never gets its GPUs
    fails the test instead of hanging it)."""
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        process.kill()
        pytest.fail(f"no GPUs claimed within {timeout} s: {process.communicate()[1][-2000:]}")
    line = process.stdout.readline().strip()
    assert line, process.stderr.read()
    return line


HOLD = """
gpus.use_gpus({count})
print(os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
time.sleep({seconds})
"""


def test_jobs_side_by_side_each_get_their_own_gpus(tmp_path):
    fake_nvidia_smi(tmp_path, 4)
    jobs = [job(tmp_path, HOLD.format(count=count, seconds=60), CUDA_VISIBLE_DEVICES=None) for count in (1, 1, 2)]
    shown = [first_line(process) for process in jobs]
    assert sorted(",".join(shown).split(",")) == ["0", "1", "2", "3"]
    assert len(shown[2].split(",")) == 2


def test_a_job_waits_for_a_free_gpu_and_takes_the_one_a_finished_or_killed_job_left(tmp_path):
    fake_nvidia_smi(tmp_path, 2)
    holders = [job(tmp_path, HOLD.format(count=1, seconds=60), CUDA_VISIBLE_DEVICES=None) for _ in range(2)]
    held = [first_line(process) for process in holders]
    waiting = job(tmp_path, HOLD.format(count=1, seconds=0), CUDA_VISIBLE_DEVICES=None)
    time.sleep(2)
    assert waiting.poll() is None  # both GPUs are held
    holders[1].send_signal(signal.SIGKILL)  # a killed job leaves no stale lock
    assert first_line(waiting) == held[1]
    assert "waiting for 1 free GPU(s) of 0,1" in waiting.communicate(timeout=30)[1]


def test_a_job_that_needs_two_holds_none_while_it_waits(tmp_path):
    holder = job(tmp_path, HOLD.format(count=1, seconds=60), CUDA_VISIBLE_DEVICES="0,1")
    assert first_line(holder) == "0"
    pair = job(tmp_path, HOLD.format(count=2, seconds=0), CUDA_VISIBLE_DEVICES="0,1")
    time.sleep(2)
    # GPU 1 is free although a job waits for two: all or none, so jobs cannot block each other.
    single = job(tmp_path, HOLD.format(count=1, seconds=0), CUDA_VISIBLE_DEVICES="0,1")
    assert first_line(single) == "1" and pair.poll() is None
    single.wait(timeout=30)
    holder.kill()
    assert first_line(pair) == "0,1"


def test_the_users_visible_devices_are_shared_and_the_machine_is_not_asked(tmp_path):
    fake_nvidia_smi(tmp_path, 8)  # not what counts: the user showed two of them
    jobs = [job(tmp_path, HOLD.format(count=1, seconds=60), CUDA_VISIBLE_DEVICES="5,GPU-abc") for _ in range(2)]
    assert sorted(first_line(process) for process in jobs) == ["5", "GPU-abc"]


def test_a_job_asking_for_more_gpus_than_there_are_takes_all_and_a_machine_without_any_is_left_alone(tmp_path):
    fake_nvidia_smi(tmp_path, 2)
    greedy = job(tmp_path, HOLD.format(count=3, seconds=0), CUDA_VISIBLE_DEVICES=None)
    out, err = greedy.communicate(timeout=30)
    assert out.strip() == "0,1" and "asks for 3 GPUs and this machine shows 2" in err
    no_gpu = job(tmp_path, "gpus.use_gpus(1)\nprint(os.environ.get('CUDA_VISIBLE_DEVICES', 'unset'))", CUDA_VISIBLE_DEVICES=None, PATH="/usr/bin:/bin")
    assert no_gpu.communicate(timeout=30)[0].strip() == "unset"


def test_use_gpus_says_which_gpus_the_job_has_or_that_it_cannot_tell(tmp_path):
    """[] where none were asked for or the machine has no NVIDIA driver (CUDA's failed start is noise
    there), the claimed ones, or None where nvidia-smi fails: the job sees what CUDA finds."""
    said = "print(gpus.use_gpus({count}))"
    no_driver = job(tmp_path, said.format(count=1), CUDA_VISIBLE_DEVICES=None, PATH="/usr/bin:/bin")
    assert no_driver.communicate(timeout=30)[0].strip() == "[]"
    assert job(tmp_path, said.format(count=0), CUDA_VISIBLE_DEVICES=None).communicate(timeout=30)[0].strip() == "[]"
    fake_nvidia_smi(tmp_path, 2)
    assert job(tmp_path, said.format(count=1), CUDA_VISIBLE_DEVICES=None).communicate(timeout=30)[0].strip() == "['0']"
    broken = tmp_path / "bin" / "nvidia-smi"
    broken.write_text("#!/bin/sh\necho 'Failed to initialize NVML: Driver/library version mismatch' >&2\nexit 18\n")
    out, err = job(tmp_path, said.format(count=1), CUDA_VISIBLE_DEVICES=None).communicate(timeout=30)
    assert out.strip() == "None" and "nvidia-smi -L failed" in err


def test_a_slurm_job_keeps_what_slurm_gave_it(tmp_path):
    fake_nvidia_smi(tmp_path, 4)
    slurm = job(tmp_path, "gpus.use_gpus(2)\nprint(os.environ.get('CUDA_VISIBLE_DEVICES', 'unset'))", CUDA_VISIBLE_DEVICES=None, SLURM_JOB_ID="42")
    assert slurm.communicate(timeout=30)[0].strip() == "unset"


@pytest.mark.parametrize("module", ["tensorflow", "jax"])
def test_claiming_after_tensorflow_or_jax_started_is_an_error(tmp_path, module):
    fake_nvidia_smi(tmp_path, 2)
    late = job(tmp_path, f"sys.modules['{module}'] = object()\ngpus.use_gpus(1)", CUDA_VISIBLE_DEVICES=None)
    assert "training.gpus: 1 asked for, but TensorFlow or JAX started first" in late.communicate(timeout=30)[1]


def test_jobs_with_their_own_tmpdir_share_the_locks(tmp_path):
    """Snakemake sets TMPDIR to each job's tmpdir resource, which a profile may set per rule."""
    device = f"GPU-avemotion-test-{os.getpid()}"  # a device no real job locks, in the machine's lock folder
    first = job(tmp_path, HOLD.format(count=1, seconds=60), CUDA_VISIBLE_DEVICES=device, AVEMOTION_GPU_LOCKS=None, TMPDIR=str(tmp_path / "a"))
    assert first_line(first) == device
    second = job(tmp_path, HOLD.format(count=1, seconds=0), CUDA_VISIBLE_DEVICES=device, AVEMOTION_GPU_LOCKS=None, TMPDIR=str(tmp_path / "b"))
    time.sleep(2)
    assert second.poll() is None
    first.kill()
    assert first_line(second) == device


@pytest.mark.parametrize("visible, shown", [("-1", "-1"), ("NoDevFiles", "NoDevFiles"), ("1,-1,0", "1"), ("0,0", "0")])
def test_visible_devices_are_read_as_cuda_reads_them(tmp_path, visible, shown):
    """None after the first entry that is no device; each device once (a device listed twice waited
    for itself forever)."""
    claim = job(tmp_path, "gpus.use_gpus(2)\ngpus.use_gpus(2)\nprint(os.environ['CUDA_VISIBLE_DEVICES'])", CUDA_VISIBLE_DEVICES=visible)
    out, err = claim.communicate(timeout=30)
    assert out.strip() == shown, err


PREDICT = """
import pandas as pd
from avemotion import cli

def predict_files(*args, **kwargs):  # what the prediction's TensorFlow would see
    print("shown:" + os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
    time.sleep(60)
    return pd.DataFrame({{"clip": [], "error": []}})

cli.predict_files = predict_files
cli.main(["predict", "--model", "model", "clip.mp4", "--out", {out!r}, *{gpus!r}])
"""


def test_avemotion_predict_takes_a_gpu_no_job_holds_or_none(tmp_path):
    """On a workstation where a training job holds GPU 0, `avemotion predict` predicts on GPU 1 (it
    saw both and TensorFlow put it on GPU 0 beside the training); with --gpus 0 on none."""
    fake_nvidia_smi(tmp_path, 2)
    training = job(tmp_path, HOLD.format(count=1, seconds=60), CUDA_VISIBLE_DEVICES=None)
    held = first_line(training)
    out = str(tmp_path / "predictions.csv")
    predicting = job(tmp_path, PREDICT.format(out=out, gpus=[]), CUDA_VISIBLE_DEVICES=None)
    assert {f"shown:{held}", first_line(predicting)} == {"shown:0", "shown:1"}
    on_cpus = job(tmp_path, PREDICT.format(out=out, gpus=["--gpus", "0"]), CUDA_VISIBLE_DEVICES=None)
    assert first_line(on_cpus) == "shown:"


def test_avemotion_predict_called_where_tensorflow_runs_leaves_its_gpus_alone(tmp_path):
    """In a process where TensorFlow already started (a notebook, the tests) it keeps the GPUs it
    sees: predict does not claim (claiming would fail there) and says when --gpus is not applied."""
    fake_nvidia_smi(tmp_path, 2)
    out = str(tmp_path / "predictions.csv")
    started = job(tmp_path, "import tensorflow\n" + PREDICT.format(out=out, gpus=["--gpus", "0"]), CUDA_VISIBLE_DEVICES="0,1")
    assert first_line(started, timeout=120) == "shown:0,1"
    started.kill()
    assert "--gpus 0 not applied: TensorFlow or JAX started in this process first" in started.communicate()[1]


def test_a_job_that_asked_for_no_gpu_computes_on_cpus(monkeypatch):
    """training.gpus: 0 (Snakemake's gpu resource 0) hides the GPUs before TensorFlow or JAX starts,
    which take every GPU they see; a Slurm GRES request for a GPU with gpu: 0 keeps them."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # recorded, so the variable is as before after the test
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    use_gpus(0, "gpu:1")  # (jobs that ask for GPUs: the tests above)
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    for module in ("tensorflow", "jax"):  # as in a training job's fresh process
        monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    use_gpus(0)  # Slurm says what a job has (a shard, an extra sbatch option)
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    monkeypatch.delenv("SLURM_JOB_ID")
    use_gpus("0")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
    monkeypatch.setitem(sys.modules, "tensorflow", object())
    with pytest.raises(GpuClaimError, match="training.gpus: 0 asked for, but TensorFlow or JAX started first"):
        use_gpus(0)


def test_a_gpu_with_mig_instances_is_one_gpu(tmp_path):
    """nvidia-smi -L lists a GPU's MIG instances under it; the machine has as many GPUs as GPU lines."""
    fake_nvidia_smi(tmp_path, 1)
    tool = tmp_path / "bin" / "nvidia-smi"
    tool.write_text(tool.read_text().replace("\nEOF", "\n  MIG 1g.10gb     Device  0: (UUID: MIG-0000aaaa)\n  MIG 1g.10gb     Device  1: (UUID: MIG-0000bbbb)\nEOF"))
    out, err = job(tmp_path, HOLD.format(count=2, seconds=0), CUDA_VISIBLE_DEVICES=None).communicate(timeout=30)
    assert out.strip() == "0" and "asks for 2 GPUs and this machine shows 1" in err


def test_a_mig_device_named_as_older_cuda_names_it_is_claimed(tmp_path):
    """CUDA 11.0-11.3 name a MIG instance MIG-GPU-<uuid>/<gpu instance>/<compute instance>: slashes a
    lock file's name cannot hold."""
    device = "MIG-GPU-5c89852c-d268-c3f3-1b07-005d5ae1dc3f/7/0"
    out, err = job(tmp_path, HOLD.format(count=1, seconds=0), CUDA_VISIBLE_DEVICES=device).communicate(timeout=30)
    assert out.strip() == device, err


def test_the_lock_folder_is_made_private_and_one_that_is_a_link_is_refused(tmp_path):
    """In a shared /tmp whoever made the folder first could hold or break every lock in it."""
    out, err = job(tmp_path, HOLD.format(count=1, seconds=0), CUDA_VISIBLE_DEVICES="0").communicate(timeout=30)
    assert out.strip() == "0", err
    assert (tmp_path / "locks").stat().st_mode & 0o777 == 0o700
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    out, err = job(tmp_path, HOLD.format(count=1, seconds=0), CUDA_VISIBLE_DEVICES="0", AVEMOTION_GPU_LOCKS=str(tmp_path / "link")).communicate(timeout=30)
    assert "the GPU lock folder is not a folder of this user's; set AVEMOTION_GPU_LOCKS" in err and not list((tmp_path / "elsewhere").iterdir())


def test_a_job_asking_for_gpus_takes_its_own_on_a_workstation_whatever_its_gres(tmp_path):
    """A profile may set a Slurm gres for the rules; run without Slurm, the job claims like any other."""
    fake_nvidia_smi(tmp_path, 2)
    holder = job(tmp_path, HOLD.format(count=1, seconds=60), CUDA_VISIBLE_DEVICES=None)
    held = first_line(holder)
    out, err = job(tmp_path, "print(gpus.use_gpus(1, 'gpu:1'))", CUDA_VISIBLE_DEVICES=None).communicate(timeout=30)
    assert out.strip() == str([{"0": "1", "1": "0"}[held]]), err
