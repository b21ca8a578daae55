"""Running a stranger's training code: bubblewrap, a clean environment, no network.

`okai verify --reproduce` runs the entry point a record names, which anyone may have
written. `Sandbox.wrap` puts the torchrun command inside bubblewrap (`bwrap`):

- every namespace new (user, pid, net, ipc, uts, cgroup): no network but a loopback
  interface of its own (torchrun and gloo meet on it), no view of other processes;
- a root file system built from scratch: the system (`/usr`, `/bin`, `/lib*`,
  `/nix/store`) and the Python installation okai runs from, read-only; a minimal `/etc`
  written here (no host secrets, no host names); a private `/tmp` and home;
- the verified inputs read-only at `/okai/inputs`, the run directory writable at
  `/okai/run`: the one folder the code can change;
- the environment an explicit allow-list (`environment`): no key, token or JWT.

A cluster node's agent uses the same sandbox with `network=True` (`Sandbox.find`), on one
node as on several: the job shares the node's network namespace, because its ranks meet
other nodes (torchrun's rendezvous, gloo/NCCL) and it reads its data from Walrus; the UTS
namespace is new but keeps the node's host name; everything else is as above, plus the
host's resolver files, the node's image identity (`readable`) and a writable home of the
job's own (`home`), where okai caches the data it reads. torchrun is PID 2 of its sandbox
on every node and tells nodes apart by address and PID: each node needs an address of its
own (`--local-addr`), as a local cluster's nodes get (okai.compute.local).

`without_secrets` is what every other run of training code (`okai train`) gets: the
caller's environment less anything that looks like a credential.
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import okai
from okai.config import Secrets
from okai.errors import UsageError

BWRAP = "bwrap"
INPUTS = Path("/okai/inputs")
RUN = Path("/okai/run")
HOME = Path("/okai/home")
HOSTNAME = "okai-sandbox"
PROBE_TIMEOUT_S = 20
PASS_THROUGH = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "TZ")
"""The only variables of the caller's environment that reach sandboxed code."""
NETWORK_PASS_THROUGH = ("NCCL_", "GLOO_")
"""With the network shared, also these prefixes (a node's tuning of its interconnect),
credentials among them excepted."""
_RESOLVER = ("hosts", "resolv.conf", "nsswitch.conf", "host.conf", "gai.conf", "ssl")
_SECRET_NAME = re.compile(
    r"TOKEN|SECRET|PASSW|PRIVATE|API_?KEY|JWT|CREDENTIAL|KEYSTORE|AUTH|COOKIE|SESSION", re.I
)
_ETC = {
    "passwd": "okai:x:0:0:okai:/okai/home:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
    "group": "okai:x:0:\nnogroup:x:65534:\n",
    "hosts": f"127.0.0.1 localhost {HOSTNAME}\n::1 localhost\n",
    "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
}
_SYSTEM_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


class SandboxUnavailable(UsageError):
    """No sandbox can be set up here, so a stranger's code will not be run."""


def is_secret_name(name: str) -> bool:
    """Whether an environment variable looks like it holds a credential."""
    return name in Secrets.env_names() or bool(_SECRET_NAME.search(name))


def without_secrets(env: Mapping[str, str]) -> dict[str, str]:
    """`env` less every variable that may hold a key, token, JWT or password."""
    return {name: value for name, value in env.items() if not is_secret_name(name)}


def environment(caller: Mapping[str, str] = os.environ, *, network: bool = False) -> dict[str, str]:
    """The allow-listed environment sandboxed code starts from."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(HOME),
        "OKAI_HOME": str(HOME / ".okai"),
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update({name: caller[name] for name in PASS_THROUGH if name in caller})
    if network:
        env.update(
            (name, value)
            for name, value in caller.items()
            if name.startswith(NETWORK_PASS_THROUGH) and not is_secret_name(name)
        )
    else:
        env["GLOO_SOCKET_IFNAME"] = "lo"  # the one interface there is
    return env


@dataclass(frozen=True)
class Sandbox:
    """A working bubblewrap (see the module doc); `find` checks that it can run here."""

    bwrap: str
    network: bool = False
    """Share the caller's network namespace (a cluster node); else only a loopback."""
    readable: tuple[Path, ...] = ()
    """Files or folders of the host shown read-only at their own paths."""
    home: Path | None = None
    """A folder mounted writable as the code's home; else a private tmpfs."""

    @classmethod
    def find(cls, *, network: bool = False) -> Sandbox:
        """bubblewrap from PATH, once it has run Python in an empty sandbox; else refuses."""
        bwrap = shutil.which(BWRAP)
        if bwrap is None:
            raise SandboxUnavailable(
                "cannot run the recorded code in a sandbox: bubblewrap (bwrap) is not on PATH",
                hint="install it (Debian/Ubuntu: apt-get install bubblewrap), or accept running "
                "a stranger's code with your files and network: --unsafe-no-sandbox",
            )
        sandbox = cls(bwrap, network=network)
        with sandbox.wrap([sys.executable, "-c", "pass"]) as command:
            try:
                probe = subprocess.run(
                    command.argv,
                    capture_output=True,
                    text=True,
                    timeout=PROBE_TIMEOUT_S,
                    env=environment(network=network),
                    pass_fds=command.fds,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                problem = str(exc)
            else:
                problem = "" if probe.returncode == 0 else probe.stderr.strip()[-300:]
        if problem:
            raise SandboxUnavailable(
                f"cannot run the recorded code in a sandbox: bubblewrap failed here ({problem})",
                hint="allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone"
                "=1), or accept running a stranger's code with your files and network: "
                "--unsafe-no-sandbox",
            )
        return sandbox

    def wrap(
        self, command: list[str], inputs: Path | None = None, run_dir: Path | None = None
    ) -> Wrapped:
        """`command` run in the sandbox, `inputs` at INPUTS (read-only), `run_dir` at RUN."""
        etc = dict(_ETC)
        args = [self.bwrap, "--unshare-all", "--die-with-parent", "--new-session"]
        args += ["--cap-drop", "ALL", "--proc", "/proc", "--dev", "/dev"]
        args += ["--tmpfs", "/dev/shm", "--tmpfs", "/tmp"]
        if self.network:
            # The node's own name and resolver: its peers know it by them.
            args.append("--share-net")
            for name in _RESOLVER:
                etc.pop(name, None)
                if (Path("/etc") / name).exists():
                    args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
        else:
            args += ["--hostname", HOSTNAME]
        if self.home is not None:
            args += ["--bind", str(self.home.resolve()), str(HOME)]
        else:
            args += ["--tmpfs", str(HOME)]
        args += _system_binds()
        pipes = [_pipe(text) for text in etc.values()]
        for name, fd in zip(etc, pipes, strict=True):
            args += ["--file", str(fd), f"/etc/{name}"]
        for path in self.readable:
            if path.exists():
                args += ["--ro-bind", str(path.resolve()), str(path)]
        for path in _python_paths():
            args += ["--ro-bind", str(path), str(path)]
        for device in sorted(Path("/dev").glob("nvidia*")):
            args += ["--dev-bind", str(device), str(device)]
        if inputs is not None:
            args += ["--ro-bind", str(inputs.resolve()), str(INPUTS)]
        if run_dir is not None:
            args += ["--bind", str(run_dir.resolve()), str(RUN)]
        args += ["--chdir", str(RUN if run_dir is not None else "/")]
        return Wrapped([*args, "--", *command], tuple(pipes))


@dataclass(frozen=True)
class Wrapped:
    """A sandboxed command line and the pipes bubblewrap reads /etc from.

    Start the process with `pass_fds=fds`; leaving the `with` block closes them here.
    """

    argv: list[str]
    fds: tuple[int, ...]

    def __enter__(self) -> Wrapped:
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in self.fds:
            os.close(fd)


def _pipe(text: str) -> int:
    """The read end of a pipe already holding `text` (small: within the pipe buffer)."""
    read, write = os.pipe()
    os.write(write, text.encode())
    os.close(write)
    return read


def _system_binds() -> list[str]:
    args: list[str] = []
    for top in ("/usr", "/nix/store"):
        if Path(top).is_dir():
            args += ["--ro-bind", top, top]
    for name in _SYSTEM_LINKS:
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    current = Path("/run/current-system")  # a NixOS node: which system runs, for the receipt
    if current.is_symlink():
        args += ["--symlink", os.readlink(current), str(current)]
    for name in ("ld.so.cache", "localtime", "fonts"):
        path = Path("/etc") / name
        if path.exists():
            args += ["--ro-bind", str(path), str(path)]
    return args


def _python_paths() -> list[Path]:
    """The folders this Python and okai run from: nothing else of the caller's files."""
    candidates = {
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        str(Path(okai.__file__).parent.parent),
        *site.getsitepackages(),
    }
    user_site = site.getusersitepackages()
    if user_site in sys.path:
        candidates.add(user_site)
    found = set()
    for candidate in candidates:
        path = Path(candidate).resolve()
        if path.is_dir() and path != Path("/") and not str(path).startswith("/usr/"):
            found.add(path)
    # Outer folders first: a bind inside another must come after it.
    return sorted(found, key=lambda p: len(p.parts))
