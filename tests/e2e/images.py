"""Test images built locally (no registry is reachable): FROM scratch with Debian's busybox-static."""

import shutil
import subprocess
import uuid
from pathlib import Path

DOCKERFILE = """FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY www /www
CMD ["/bin/sh"]
"""


def busybox_path() -> str:
    for p in ("/bin/busybox", "/usr/bin/busybox"):
        if Path(p).exists():
            return p
    raise RuntimeError("busybox-static is required (apt-get install busybox-static)")


def build_busybox_image(tmp: Path, tag: str, page: str = "hello from gantry\n") -> str:
    """Builds a busybox image whose /www/index.html holds `page`; returns the tag."""
    ctx = tmp / f"ctx-{uuid.uuid4().hex[:8]}"
    (ctx / "www").mkdir(parents=True)
    shutil.copy(busybox_path(), ctx / "busybox")
    (ctx / "www" / "index.html").write_text(page)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    subprocess.run(["docker", "build", "-q", "-t", tag, str(ctx)], check=True, capture_output=True, timeout=300)
    return tag


def docker(*args, check=True, input=None, timeout=300) -> subprocess.CompletedProcess:
    p = subprocess.run(["docker", *args], capture_output=True, text=True, input=input, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {p.stderr}")
    return p
