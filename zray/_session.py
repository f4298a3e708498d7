"""Session directories: where a node's sockets, its node.json and its spill files live,
and how a process finds the cluster it is to join on this machine. Only directories
and sockets owned by the caller's uid, mode 0700, reached without symlinks, count:
connecting to another user's socket would let that user answer with a pickle.

    /tmp/zray-XXXXXXXX/        0700, the caller's
        node.sock              the node broker's ROUTER (ipc)
        head.sock              the head broker's, on the head's machine
        node.json              {"node_id", "head", "public", "pid"}: who to connect as
        keys/                  the cluster's CurveZMQ keys, on the head's machine (_keys)
"""
from __future__ import annotations

import errno
import glob
import json
import os
import select
import socket
import stat
import tempfile
import time
from dataclasses import dataclass

from ._log import get_logger

NODE_INFO = "node.json"
PREFIX = "zray-"


@dataclass(frozen=True)
class NodeInfo:
    """What a process needs to join the node of a session directory."""
    session_dir: str
    node_id: bytes
    head: str          # the head broker's address (ipc:// or tcp://)
    public: str        # the node's tcp address for other nodes ("" for a local-only node)

    @property
    def address(self) -> str:
        return f"ipc://{self.session_dir}/node.sock"


def write_node_info(session_dir: str, node_id: bytes, head: str, public: str) -> None:
    """Written by the node broker before it binds its socket (atomically: a reader never
    sees half a file)."""
    path = os.path.join(session_dir, NODE_INFO)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"node_id": node_id.hex(), "head": head, "public": public,
                   "pid": os.getpid()}, f)
    os.replace(tmp, path)


def tell_ready(fd: int, text: str) -> None:
    """A broker tells its starter it serves: one line on the starter's pipe, then closed."""
    try:
        os.write(fd, text.encode() + b"\n")
    except OSError:
        pass   # the starter is gone: nobody to tell
    finally:
        os.close(fd)


def read_ready(fd: int, timeout: float, what: str) -> str:
    """The line a broker started with --ready-fd writes once it serves."""
    data = b""
    deadline = time.monotonic() + timeout
    waiting = select.poll()   # (not select(): past 1,023 open files its fd is out of range)
    waiting.register(fd, select.POLLIN)
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not waiting.poll(left * 1000):
            raise TimeoutError(f"{what} did not start within {timeout} s")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise RuntimeError(f"{what} exited before it was ready (see its log)")
        data += chunk
    return data.decode().strip()


def owned_private_dir(path: str) -> str | None:
    """None if `path` is a directory of this uid, mode 0700, not a symlink; else why not."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"cannot stat it ({exc.strerror})"
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        return "it is not a directory (or is a symlink)"
    if st.st_uid != os.getuid():
        return f"it belongs to uid {st.st_uid}, not to you ({os.getuid()})"
    if st.st_mode & 0o077:
        return f"its mode is {stat.S_IMODE(st.st_mode):o}, not 700"
    return None


def _owned_socket(path: str) -> str | None:
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"no node socket ({exc.strerror})"
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.getuid():
        return "its node.sock is not a socket of yours (or is a symlink)"
    return None


def _answers(path: str) -> str | None:
    """None if a broker listens at the unix socket `path` (of this user, in a private
    directory: checked before); else why not. A session whose broker died (SIGKILL, a
    reboot's leftovers) keeps its socket file, and connecting to it hung init() for
    its whole start timeout."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError as exc:
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return "no broker answers at its socket (it stopped without cleaning up)"
        return f"its socket cannot be reached ({exc.strerror or exc})"
    finally:
        probe.close()
    return None


def read_node_info(session_dir: str) -> NodeInfo:
    """The node of a session directory; ConnectionError naming what is wrong."""
    for why in (owned_private_dir(session_dir),
                _owned_socket(os.path.join(session_dir, "node.sock"))):
        if why is not None:
            raise ConnectionError(f"{session_dir} is not a zray session you can join: {why}")
    path = os.path.join(session_dir, NODE_INFO)
    try:
        with open(path) as f:
            info = json.load(f)
        return NodeInfo(session_dir, bytes.fromhex(info["node_id"]), str(info["head"]),
                        str(info.get("public", "")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConnectionError(f"{session_dir} is not a zray session you can join: "
                              f"{path} is unreadable ({exc})") from None


def sessions() -> tuple[list[NodeInfo], list[str]]:
    """This user's live sessions on this machine, newest first, and a line for each
    candidate skipped (another user's, wrong mode, a symlink, no socket, no broker)."""
    found, skipped = [], []
    pattern = os.path.join(tempfile.gettempdir(), PREFIX + "*")
    for path in sorted(glob.glob(pattern), key=_mtime, reverse=True):
        try:
            found.append(_live_node_info(path))
        except ConnectionError as exc:
            skipped.append(str(exc))
    return found, skipped


def _live_node_info(session_dir: str) -> NodeInfo:
    """read_node_info, and a broker answers at its socket (ConnectionError if not)."""
    info = read_node_info(session_dir)
    why = _answers(os.path.join(session_dir, "node.sock"))
    if why is not None:
        raise ConnectionError(f"{session_dir} is not a zray session you can join: {why}")
    return info


def _mtime(path: str) -> float:
    try:
        return os.lstat(path).st_mtime
    except OSError:
        return 0.0


def find(address: str) -> NodeInfo:
    """The node to join for `address`: "auto" (this user's newest session), a session
    directory, an ipc:// node address, or "HOST:PORT" / "tcp://HOST:PORT" (this
    machine's node of the cluster whose head listens there)."""
    if address.startswith("ipc://"):
        return _live_node_info(os.path.dirname(address[len("ipc://"):]))
    if os.path.isdir(address):
        return _live_node_info(address)
    found, skipped = sessions()
    if address == "auto":
        if found:
            _say_skipped(address, found[0], skipped)
            return found[0]
        raise ConnectionError(_none_here("address='auto':", skipped))
    head = address if address.startswith("tcp://") else f"tcp://{address}"
    for info in found:
        if info.head == head:
            _say_skipped(address, info, skipped)
            return info
    raise ConnectionError(_none_here(
        f"address={address!r}: no node of that cluster runs on this machine (start one with "
        f"`zray start --address {address.removeprefix('tcp://')} --token ...`);", skipped))


def _say_skipped(address: str, chosen: NodeInfo, skipped: list[str]) -> None:
    """A session found: the candidates passed over on the way, and why, in the log."""
    if skipped:
        get_logger("session").warning(
            f"address={address!r}: joining {chosen.session_dir}; skipped {len(skipped)} other "
            "candidate(s): " + "; ".join(skipped[:5]) + ("; ..." if len(skipped) > 5 else ""))


def _none_here(what: str, skipped: list[str]) -> str:
    msg = (f"{what} no zray cluster is running on this machine (none of yours under "
           f"{tempfile.gettempdir()}/{PREFIX}*)")
    if skipped:
        msg += "; skipped: " + "; ".join(skipped[:5])
    return msg
