"""Builds the docker sandbox's image locally, from this machine's own files (no registry).

`ensure_local_image(packages=("numpy",))` assembles a minimal root file system from the
interpreter that runs the platform (its base installation: the binary, libpython, the standard
library without its tests, IDLE, tkinter, ensurepip and the like) plus the listed packages and
their runtime requirements, copied from the platform's own environment as their RECORD lists
them (so candidates see the same numpy as the trusted scorer), the shared libraries all of these
link against (found with ldd), the dynamic loader, /bin/sh (dash) and a /etc holding only
passwd, group and the loader cache. It writes that tree as a tar file and imports it
(`docker import`, docker-py's `import_image_from_file`) as
`discovery-sandbox:local-<package names>-<hash>`, where the hash covers every file that went in
(path, size, mtime) and this builder's version: the image is built once per machine,
interpreter and package set (a few seconds, about 130 MB for numpy) and reused from the engine's
image store afterwards; an fcntl lock makes concurrent processes build it once. Older builds of
the same package set are kept (another checkout or venv on this machine may be running with
one); `--prune` removes those no container uses.

Nothing in the image is specific to a run: the trusted supervisor, runner and result reader are
streamed into each container (sandbox/docker.py), so an image never holds a stale copy.

Command line: `python -m sandbox.images.build [--package NAME ...] [--force]` prints the tag,
e.g. `--package numpy --package scipy` for a problem whose candidates may import scipy (then
DISCOVERY_DOCKER_IMAGE=<that tag>).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import threading
import time
from pathlib import Path

REPOSITORY = "discovery-sandbox"
BUILDER_VERSION = 3
PREFIX = "/usr/local"  # where the interpreter lives inside the image
SANDBOX_UID = 65532  # every process of a sandbox container (sandbox.docker.UID)
LABEL = "org.discovery.sandbox.image"

# Parts of the standard library a candidate never needs (and that make up most of its size).
_STDLIB_SKIP = {"site-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip",
                "lib2to3", "pydoc_data", "venv", "distutils", "turtle.py", "__phello__"}
_TEST_DIRS = {"tests", "test"}  # test suites inside packages (numpy.testing itself is kept)
DEFAULT_PACKAGES = ("numpy",)
_PASSWD = ("root:x:0:0:root:/root:/usr/sbin/nologin\n"
           f"sandbox:x:{SANDBOX_UID}:{SANDBOX_UID}:sandbox:/work:/usr/sbin/nologin\n"
           "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
_GROUP = f"root:x:0:\nsandbox:x:{SANDBOX_UID}:\nnogroup:x:65534:\n"

_lock = threading.Lock()
_memo: dict[tuple[str, ...], str] = {}


class ImageBuildError(RuntimeError):
    """The local image could not be built (the message says why)."""


# -- what goes in ----------------------------------------------------------------------------
def _interpreter() -> tuple[Path, str, Path]:
    """(real binary, 'python3.X', stdlib dir) of the base installation of this interpreter."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    base = Path(sys.base_prefix)
    binary = Path(os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable))
    if not binary.is_file():
        binary = Path(os.path.realpath(base / "bin" / version))
    stdlib = Path(sysconfig.get_path("stdlib", vars={"installed_base": str(base),
                                                     "base": str(base)}))
    if not (stdlib / "os.py").is_file():
        raise ImageBuildError(f"no standard library found at {stdlib}")
    return binary, version, stdlib


def _distributions(packages) -> list:
    """The installed distributions of `packages` and, recursively, of their runtime requirements
    (extras and markers that do not apply are left out), from the platform's environment."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    seen: dict[str, md.Distribution] = {}
    todo = [str(p) for p in packages]
    while todo:
        req = Requirement(todo.pop())
        key = req.name.lower().replace("_", "-")
        if key in seen:
            continue
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            raise ImageBuildError(f"{req.name} is not installed in the platform's environment "
                                  f"(the local image copies the platform's own packages)") from None
        seen[key] = dist
        for dep in dist.requires or ():
            r = Requirement(dep)
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                todo.append(dep)
    return [seen[k] for k in sorted(seen)]


def _package_files(packages) -> dict[str, str]:
    """{path relative to site-packages: host file} of the distributions (their RECORD), without
    test suites, console scripts or optimised bytecode."""
    files: dict[str, str] = {}
    for dist in _distributions(packages):
        for rel in dist.files or ():
            parts = Path(str(rel)).parts
            if (not parts or parts[0] == ".." or any(p in _TEST_DIRS for p in parts[:-1])
                    or parts[-1].endswith((".opt-1.pyc", ".opt-2.pyc"))):
                continue
            host = Path(dist.locate_file(rel))
            if host.is_file():
                files[str(Path(*parts))] = str(host)
            if parts[-1].endswith(".py"):  # bytecode compiled after the install, if any
                tag = sys.implementation.cache_tag
                pyc = host.parent / "__pycache__" / f"{host.stem}.{tag}.pyc"
                if pyc.is_file():
                    files[str(Path(*parts[:-1], "__pycache__", pyc.name))] = str(pyc)
    return files


def _walk(src: Path, skip: set[str]):
    """Files under src (relative paths), skipping directories and files named in `skip`,
    optimised bytecode, static libraries and tkinter's extension."""
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d not in skip)
        for name in sorted(files):
            if (name.endswith((".opt-1.pyc", ".opt-2.pyc", ".a")) or name in skip
                    or name.startswith("_tkinter.")):
                continue
            yield Path(root, name).relative_to(src)


def _ldd(paths: list[str]) -> set[str]:
    """Shared libraries (host paths as ldd prints them) that `paths` need."""
    needed: set[str] = set()
    for start in range(0, len(paths), 64):
        chunk = paths[start:start + 64]
        out = subprocess.run(["ldd", *chunk], capture_output=True, text=True,
                             env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"}).stdout
        for line in out.splitlines():
            line = line.strip()
            if "=>" in line:
                target = line.split("=>", 1)[1].strip().split(" (")[0].strip()
                if target.startswith("/"):
                    needed.add(target)
            elif line.startswith("/") and " (" in line:
                needed.add(line.split(" (")[0].strip())
    return needed


def _is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def manifest(packages=DEFAULT_PACKAGES) -> dict[str, str]:
    """{path inside the image: host file} of every regular file of the image holding the
    interpreter and `packages` (with their requirements)."""
    binary, version, stdlib = _interpreter()
    files: dict[str, str] = {f"{PREFIX}/bin/{version}": str(binary)}
    for lib in sorted((Path(sys.base_prefix) / "lib").glob("libpython3*.so*")):
        if not lib.is_symlink():  # the symlinks among them are added by write_rootfs
            files[f"{PREFIX}/lib/{lib.name}"] = str(lib)
    for rel in _walk(stdlib, _STDLIB_SKIP):
        if rel.parts[0].startswith("config-"):
            continue
        files[f"{PREFIX}/lib/{version}/{rel}"] = str(stdlib / rel)
    site = f"{PREFIX}/lib/{version}/site-packages"
    for rel, host in _package_files(packages).items():
        files[f"{site}/{rel}"] = host
    dash = os.path.realpath("/bin/sh")
    files[dash] = dash
    elves = [host for dest, host in files.items()
             if dest.endswith((".so",)) or ".so." in dest or host in (str(binary), dash)
             if _is_elf(Path(host))]
    own = {os.path.realpath(h) for h in files.values()}
    for lib in sorted(_ldd(elves)):
        real = os.path.realpath(lib)
        if real in own:
            continue  # libpython, numpy.libs: already in at their own place
        dest = os.path.join(os.path.realpath(os.path.dirname(lib)), os.path.basename(lib))
        files[dest] = real
    return files


def _top_links() -> dict[str, str]:
    """The host's merged-/usr symlinks (/bin -> usr/bin, ...), repeated in the image."""
    out = {}
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = f"/{top}"
        if os.path.islink(path):
            out[top] = os.readlink(path)
    return out


def _names(packages) -> tuple[str, ...]:
    from packaging.requirements import Requirement

    return tuple(sorted({Requirement(str(p)).name.lower().replace("_", "-") for p in packages}))


def image_tag(files: dict[str, str] | None = None, packages=DEFAULT_PACKAGES) -> str:
    """The tag of the local image for this machine's files: discovery-sandbox:local-<package
    names>-<hash of every file that goes in>."""
    files = manifest(packages) if files is None else files
    h = hashlib.sha256(json.dumps({"v": BUILDER_VERSION, "links": _top_links(),
                                   "passwd": _PASSWD, "group": _GROUP}).encode())
    for dest in sorted(files):
        st = os.stat(files[dest])
        h.update(f"{dest}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return f"{REPOSITORY}:local-{'-'.join(_names(packages))}-{h.hexdigest()[:16]}"


# -- the tarball -------------------------------------------------------------------------------
def _dir_info(name: str, mode: int = 0o755) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name.lstrip("/"))
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, 0
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name.lstrip("/"))
    info.size, info.mode, info.mtime = len(data), mode, 0
    tar.addfile(info, io.BytesIO(data))


def _loader_cache(files: dict[str, str], links: dict[str, str]) -> bytes | None:
    """/etc/ld.so.cache for the image's library dirs (so /usr/local/lib, home of libpython, is
    searched): ldconfig -r on a scratch tree holding hard links (or copies) of the libraries."""
    ldconfig = shutil.which("ldconfig", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if ldconfig is None:
        return None
    with tempfile.TemporaryDirectory(prefix="sbx-ldcache-") as root:
        lib_dirs = sorted({os.path.dirname(d) for d in files
                           if d.endswith(".so") or ".so." in os.path.basename(d)})
        lib_dirs = [d for d in lib_dirs if "site-packages" not in d and "lib-dynload" not in d]
        for dest in files:
            if os.path.dirname(dest) in lib_dirs:
                target = Path(root + dest)
                target.parent.mkdir(parents=True, exist_ok=True)
                try:  # a copy, not a symlink: ldconfig -r resolves links inside the root
                    os.link(files[dest], target)
                except OSError:
                    shutil.copyfile(files[dest], target)
        for top, link in links.items():
            if not os.path.lexists(os.path.join(root, top)):
                os.symlink(link, os.path.join(root, top))
        os.makedirs(os.path.join(root, "etc"), exist_ok=True)
        with open(os.path.join(root, "etc", "ld.so.conf"), "w") as f:
            f.write("\n".join(lib_dirs) + "\n")
        subprocess.run([ldconfig, "-r", root], check=True, capture_output=True)
        with open(os.path.join(root, "etc", "ld.so.cache"), "rb") as f:
            return f.read()


def write_rootfs(path: str, files: dict[str, str]) -> None:
    """Writes the image's root file system as an uncompressed tar file at `path`."""
    _binary, version, _stdlib = _interpreter()
    links = _top_links()
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for top, link in links.items():
            info = tarfile.TarInfo(top)
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, link, 0o777
            tar.addfile(info)
        made: set[str] = set()
        for d, mode in (("/etc", 0o755), ("/tmp", 0o1777), ("/work", 0o755), ("/proc", 0o555),
                        ("/sys", 0o555), ("/dev", 0o755), ("/root", 0o700),
                        ("/usr/sbin", 0o755)):
            tar.addfile(_dir_info(d, mode))
            made.add(d)

        def parents(dest: str) -> None:
            missing = []
            p = os.path.dirname(dest)
            while p not in ("/", "") and p not in made:
                missing.append(p)
                p = os.path.dirname(p)
            for m in reversed(missing):
                top = m.lstrip("/").split("/")[0]
                if "/" not in m.lstrip("/") and top in links:
                    continue
                tar.addfile(_dir_info(m))
                made.add(m)

        for dest in sorted(files):
            parents(dest)
            info = tar.gettarinfo(files[dest], arcname=dest.lstrip("/"))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = (info.mode & 0o755) | 0o444  # world-readable, never world-writable
            with open(files[dest], "rb") as f:
                tar.addfile(info, f)
        # interpreter names and /bin/sh
        for name, target in ((f"{PREFIX}/bin/python3", version), (f"{PREFIX}/bin/python", version),
                             ("/usr/bin/sh", os.path.basename(os.path.realpath("/bin/sh")))):
            info = tarfile.TarInfo(name.lstrip("/"))
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
            tar.addfile(info)
        for lib in sorted((Path(sys.base_prefix) / "lib").glob("libpython3*.so*")):
            if lib.is_symlink():  # libpython3.11.so -> libpython3.11.so.1.0, as on the host
                info = tarfile.TarInfo(f"{PREFIX}/lib/{lib.name}".lstrip("/"))
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, os.readlink(lib), 0o777
                tar.addfile(info)
        _add_bytes(tar, "/etc/passwd", _PASSWD.encode())
        _add_bytes(tar, "/etc/group", _GROUP.encode())
        _add_bytes(tar, "/etc/hostname", b"sandbox\n")
        cache = _loader_cache(files, links)
        conf = "\n".join(sorted({os.path.dirname(d) for d in files
                                 if ".so" in os.path.basename(d)
                                 and "site-packages" not in d and "lib-dynload" not in d}))
        _add_bytes(tar, "/etc/ld.so.conf", (conf + "\n").encode())
        if cache is not None:
            _add_bytes(tar, "/etc/ld.so.cache", cache)


# -- build and cache ---------------------------------------------------------------------------
def _client():
    import docker

    return docker.from_env(timeout=600)


def _cache_dir() -> str:
    path = os.path.join(os.path.expanduser(os.environ.get("XDG_CACHE_HOME") or "~/.cache"),
                        "discovery")
    os.makedirs(path, exist_ok=True)
    return path


def _prune(client, keep: str, say) -> None:
    """Removes older local builds of the same package set (another interpreter or package
    version); images in use stay."""
    import docker

    prefix = keep.rsplit("-", 1)[0] + "-"
    for image in client.images.list(name=REPOSITORY):
        for tag in image.tags:
            if tag != keep and tag.startswith(prefix) and len(tag) == len(keep):
                try:
                    client.images.remove(tag)
                    say(f"removed the older local build {tag}")
                except docker.errors.APIError:
                    pass


def ensure_local_image(client=None, packages=DEFAULT_PACKAGES, force: bool = False,
                       log=None) -> str:
    """The tag of the local sandbox image holding this interpreter and `packages` (default:
    numpy; each with its requirements, copied from the platform's own environment), building
    and importing it first if the engine does not have it yet (once per machine, interpreter and
    package set; thread- and process-safe).

    client: a docker.DockerClient (default docker.from_env()); force: rebuild even if present;
    log: a callable taking one line of progress (default: none)."""
    say = log or (lambda _msg: None)
    names = _names(packages)
    with _lock:
        if not force and names in _memo:  # this process has built or found it already
            return _memo[names]
    files = manifest(packages)
    tag = image_tag(files, packages)
    with _lock:
        import docker

        client = client or _client()
        lock_path = os.path.join(_cache_dir(), "sandbox-image.lock")
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if not force:
                    try:
                        client.images.get(tag)
                        _memo[names] = tag
                        return tag
                    except docker.errors.ImageNotFound:
                        pass
                start = time.monotonic()
                with tempfile.TemporaryDirectory(prefix="sbx-image-",
                                                 dir=_cache_dir()) as tmp:
                    tar_path = os.path.join(tmp, "rootfs.tar")
                    write_rootfs(tar_path, files)
                    size = os.path.getsize(tar_path)
                    say(f"importing {tag} ({size / 2**20:.0f} MiB root file system)")
                    repo, _, version = tag.partition(":")
                    changes = [f"ENV PATH={PREFIX}/bin:/usr/bin:/bin", "ENV LANG=C.UTF-8",
                               f"USER {SANDBOX_UID}:{SANDBOX_UID}", "WORKDIR /",
                               f"LABEL {LABEL}=local",
                               f"LABEL {LABEL}.packages={','.join(names)}",
                               f'CMD ["{PREFIX}/bin/python3", "-I", "-c", "pass"]']
                    client.api.import_image_from_file(tar_path, repository=repo, tag=version,
                                                      changes=changes)
                client.images.get(tag)
                say(f"built {tag} in {time.monotonic() - start:.1f}s")
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        _memo[names] = tag
        return tag


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Build the docker sandbox's local image.")
    parser.add_argument("--package", action="append", dest="packages", metavar="NAME",
                        help="a package of the platform's environment to put in (repeatable; "
                             "default: numpy)")
    parser.add_argument("--force", action="store_true", help="rebuild even if present")
    parser.add_argument("--prune", action="store_true",
                        help="then remove the other local builds of the same package set that no container uses")
    args = parser.parse_args(argv)
    say = lambda m: print(m, file=sys.stderr)  # noqa: E731
    tag = ensure_local_image(packages=tuple(args.packages or DEFAULT_PACKAGES), force=args.force, log=say)
    if args.prune:
        _prune(_client(), tag, say)
    print(tag)


if __name__ == "__main__":
    main()
