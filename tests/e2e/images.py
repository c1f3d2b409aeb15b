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


PYTHON = "/usr/bin/python3.11"
DIST = Path("/usr/lib/python3/dist-packages")
# What boto3 needs from Debian's python3-boto3, and the botocore models the tests call.
BOTO_PACKAGES = ("boto3", "botocore", "jmespath", "dateutil", "s3transfer", "urllib3", "six.py", "requests",
                 "idna", "charset_normalizer", "chardet", "certifi")
BOTOCORE_MODELS = ("sts", "ecs", "_retry.json", "endpoints.json", "partitions.json",
                   "sdk-default-configuration.json")
PYTHON_DOCKERFILE = """FROM scratch
COPY root/ /
ENV PYTHONPATH=/usr/lib/python3/dist-packages PYTHONDONTWRITEBYTECODE=1
ENTRYPOINT ["/usr/bin/python3"]
"""


def _shared_libraries(binaries) -> set[str]:
    libs = set()
    for b in binaries:
        out = subprocess.run(["ldd", str(b)], capture_output=True, text=True).stdout
        for line in out.splitlines():
            parts = line.split()
            if "=>" in parts and len(parts) > parts.index("=>") + 1 and parts[parts.index("=>") + 1].startswith("/"):
                libs.add(parts[parts.index("=>") + 1])
            elif parts and parts[0].startswith("/"):
                libs.add(parts[0])
    return libs


def build_python_boto3_image(tmp: Path, tag: str) -> str:
    """Builds a FROM-scratch image with the host's Debian Python (interpreter, standard library,
    shared libraries) and Debian's python3-boto3; its entrypoint is python3. Returns the tag."""
    stdlib = Path("/usr/lib/python3.11")
    if not Path(PYTHON).exists() or not (DIST / "boto3").exists():
        raise RuntimeError("python3 and python3-boto3 are required (apt-get install python3-boto3)")
    ctx = tmp / f"ctx-{uuid.uuid4().hex[:8]}"
    root = ctx / "root"
    (root / "usr/bin").mkdir(parents=True)
    shutil.copy(PYTHON, root / "usr/bin/python3")
    skip = shutil.ignore_patterns("test", "tests", "idlelib", "tkinter", "turtledemo", "ensurepip",
                                  "lib2to3", "__pycache__", "*.pyc")
    shutil.copytree(stdlib, root / stdlib.relative_to("/"), ignore=skip, symlinks=True)
    dist = root / DIST.relative_to("/")
    dist.mkdir(parents=True)
    for name in BOTO_PACKAGES:
        src = DIST / name
        if src.is_dir():
            ignore = skip
            if name == "botocore":
                def ignore(d, names, _skip=skip):
                    if Path(d) == DIST / "botocore" / "data":
                        return [n for n in names if n not in BOTOCORE_MODELS]
                    return _skip(d, names)
            shutil.copytree(src, dist / name, ignore=ignore, symlinks=True)
        else:
            shutil.copy(src, dist / name)
    binaries = [PYTHON, *(stdlib / "lib-dynload").glob("*.so")]
    for lib in _shared_libraries(binaries):
        dest = root / lib.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(lib, dest)
    (ctx / "Dockerfile").write_text(PYTHON_DOCKERFILE)
    subprocess.run(["docker", "build", "-q", "-t", tag, str(ctx)], check=True, capture_output=True, timeout=300)
    shutil.rmtree(ctx, ignore_errors=True)
    return tag
