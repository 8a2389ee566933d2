"""Fixtures for the package tests: the integration tests' `stack` and `uniq`
(test/it/conftest.py, loaded under another name), and `root`, a clean
Debian 12 root (debootstrap) with /proc and /dev mounted, to install the
.deb into with apt-get inside chroot.

The packages come from the environment, set by test/pkg/deb-check:
M2K_DEB (the build under test) and M2K_DEB_NEW (a newer build of the same
code, for the upgrade).
"""
import importlib.util
import os
import pathlib
import shutil
import subprocess
import tempfile

import pytest

HERE = pathlib.Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("m2k_it_conftest", HERE.parent / "it" / "conftest.py")
_it = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_it)
stack = _it.stack
uniq = _it.uniq
_stack_heal = _it._stack_heal
pytest_terminal_summary = _it.pytest_terminal_summary


class Root:
    """A Debian root to chroot into."""

    def __init__(self, path):
        self.path = pathlib.Path(path)

    def run(self, *cmd, user=None, timeout=300, check=True, input=None):
        """Runs cmd inside the root (as user, when given); returns the
        CompletedProcess with text output."""
        pre = ["chroot"] + ([f"--userspec={user}:{user}"] if user else []) + [str(self.path)]
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
               "DEBIAN_FRONTEND": "noninteractive", "HOME": "/root"}
        p = subprocess.run(pre + list(cmd), capture_output=True, text=True, timeout=timeout,
                           env=env, input=input, stdin=None if input else subprocess.DEVNULL)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
        return p

    def file(self, path):
        return self.path / str(path).lstrip("/")

    def apt(self, *args, timeout=600):
        return self.run("apt-get", "-y", "-q", "--no-install-recommends", *args, timeout=timeout)


def _debs():
    deb, new = os.environ.get("M2K_DEB"), os.environ.get("M2K_DEB_NEW")
    if not deb or not new:
        pytest.fail("M2K_DEB and M2K_DEB_NEW must name the .deb files (run test/pkg/deb-check)")
    return pathlib.Path(deb).resolve(), pathlib.Path(new).resolve()


@pytest.fixture(scope="module")
def debs():
    return _debs()


@pytest.fixture(scope="module")
def root():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="m2k-root-"))
    r = Root(tmp / "root")
    mounts = []
    try:
        subprocess.run([str(HERE / "rootfs.sh"), str(r.path)], check=True, timeout=1200)
        for what, where, opts in (("proc", "proc", ["-t", "proc"]), ("/dev", "dev", ["--bind"])):
            subprocess.run(["mount", *opts, what, str(r.file(where))], check=True)
            mounts.append(r.file(where))
        r.run("apt-get", "update", "-q", timeout=600)
        yield r
    finally:
        for m in reversed(mounts):
            subprocess.run(["umount", "-l", str(m)], check=False)
        # never follow a mount we could not undo
        if not any(os.path.ismount(m) for m in mounts):
            shutil.rmtree(tmp, ignore_errors=True)
