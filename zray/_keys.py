"""The cluster's CurveZMQ key: its files, its join token, and the ZAP handler that
decides who may connect to a tcp port.

Scheme. A cluster has one CurveZMQ key pair. Every tcp server socket (the head, a
node's public port) uses it as its server pair (`serve`), and every client (node to
head, node to node, driver) presents the same pair as its client pair
(`connect_as_client`). A `ZapHandler` (ZMQ RFC 27) accepts a client only if the
public key it proved it holds is the cluster's. The CURVE handshake proves each side
holds the secret key of the public key it claims, so a connection completes only
between two processes that both know the cluster's secret key: clients authenticate
the server as well as the server the clients.

Threat model.
- Who can connect: holders of the secret key (the 0600 files of `create`, or the
  join token). A peer without it is refused during the handshake, inside libzmq:
  none of its bytes reach zray, so nothing from the network is unpickled before
  authentication.
- What is encrypted: every frame on a CURVE tcp connection (confidentiality and
  integrity, with forward secrecy from per-connection short-term keys).
- What must stay secret: the secret key, i.e. the key directory's files and the
  join token. The public key is derived from it and is not relied on being secret.
- Not protected against: a compromised cluster member or anyone holding the key
  (they can run any code on every node, as the cluster's user); a process of the
  same uid (or root) on a member's machine, which can read the key file; a token
  seen on a command line (`ps` shows it to every local user) or in shell history;
  denial of service (a flood of handshakes costs CPU; refusals are only logged
  throttled); traffic analysis (who talks to whom, and how much).
- `--insecure` turns all of this off: see `warn_insecure`.
"""
from __future__ import annotations

import base64
import dataclasses
import hmac
import os
import secrets
import stat
import struct
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol

import zmq
from zmq.utils import z85

from ._config import Config

PUBLIC_FILE = "cluster.public"
SECRET_FILE = "cluster.secret"
# The token: the raw secret in URL-safe base64 (letters, digits, - and _ only), so that
# it can be pasted into a shell unquoted (Z85's {}&!: cannot: & backgrounds a command).
TOKEN_PREFIX = "zray2-"
_TOKEN_CHARS = 43   # 32 bytes in base64 without padding
# RFC 27 fixes this endpoint: libzmq sends a server socket's ZAP requests to whatever
# socket of the same zmq context is bound there.
ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ZAP_DOMAIN = b"zray"
# A flood of refused clients writes at most one log line per this period (each line
# counts the refusals it stands for), so it cannot fill the disk or drown the log.
REFUSAL_LOG_PERIOD_S = 10.0

_KEY_CHARS = 40  # a 32-byte curve25519 key in Z85
_Z85 = frozenset(z85.Z85CHARS)
# Contexts with a live ZapHandler, and the public key it admits: serve() refuses to
# make a server socket that no handler (or a handler of another key) would guard.
_guarded: weakref.WeakKeyDictionary[zmq.Context, bytes] = weakref.WeakKeyDictionary()


class _Log(Protocol):
    def warning(self, event: str, **kw: Any) -> None: ...


@dataclasses.dataclass(frozen=True)
class ClusterKeys:
    """The cluster's CurveZMQ key pair, Z85-encoded (40 bytes each).

    Construction checks that `public` is the public key of `secret`. repr() leaves
    the secret out, so that logging a ClusterKeys never leaks it.
    """

    public: bytes
    secret: bytes = dataclasses.field(repr=False)

    def __post_init__(self) -> None:
        _check_key(self.public, "ClusterKeys.public")
        _check_key(self.secret, "ClusterKeys.secret")
        if zmq.curve_public(self.secret) != self.public:
            raise ValueError("ClusterKeys: `public` is not the public key of `secret`")


def _check_key(key: bytes, where: str) -> None:
    """Raise ValueError (naming `where`, never echoing the key) unless `key` is a Z85 key."""
    if not isinstance(key, bytes):
        raise ValueError(f"{where}: a key is bytes, not {type(key).__name__}")
    if len(key) != _KEY_CHARS:
        raise ValueError(f"{where}: a key is {_KEY_CHARS} Z85 characters, this one has {len(key)}")
    for i, char in enumerate(key):
        if char not in _Z85:
            raise ValueError(f"{where}: character {i + 1} is not in the Z85 alphabet")
    try:
        z85.decode(key)
    except (ValueError, struct.error):
        # Z85 characters whose 5-character group exceeds 32 bits.
        raise ValueError(f"{where}: not a valid Z85 key (a 5-character group is out of range)") from None


# ---- key files ----------------------------------------------------------------------

def create(directory: str | os.PathLike[str]) -> ClusterKeys:
    """Make a new cluster key pair and `save` it into `directory`; the pair."""
    keys = ClusterKeys(*zmq.curve_keypair())
    save(directory, keys)
    return keys


def save(directory: str | os.PathLike[str], keys: ClusterKeys) -> None:
    """Write `keys` into `directory` (made 0700 if missing) as two 0600 files, e.g. the
    pair of a join token, so that the node's daemons get `--keys DIR`, not the token.

    Refuses a directory not owned by this user or open to group or others
    (PermissionError), and a directory that already holds keys (FileExistsError:
    `load` them instead, or remove them to change the key).
    """
    path = os.fspath(directory)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass  # checked below like any existing directory
    dir_fd = _open_dir(path)
    try:
        for name in (PUBLIC_FILE, SECRET_FILE):
            if _exists(name, dir_fd):
                raise FileExistsError(
                    f"{os.path.join(path, name)} exists: load() the cluster key there, or remove "
                    f"{PUBLIC_FILE} and {SECRET_FILE} to change it (joined nodes then need the "
                    "new token)")
        # Public first: a crash between the two leaves no secret without its public file,
        # and load() names the missing file.
        _write_atomic(dir_fd, path, PUBLIC_FILE, keys.public)
        _write_atomic(dir_fd, path, SECRET_FILE, keys.secret)
        os.fsync(dir_fd)  # the renames survive a power cut
    finally:
        os.close(dir_fd)


def load(directory: str | os.PathLike[str]) -> ClusterKeys:
    """Read the key pair `create` wrote, after checking that nobody else could have
    read or planted it: the directory and files are this user's, not symlinks, and
    not open to group or others (PermissionError otherwise), and the public key is
    the secret's (ValueError otherwise). FileNotFoundError if a file is missing.
    """
    path = os.fspath(directory)
    dir_fd = _open_dir(path)
    try:
        public = _read_key(dir_fd, path, PUBLIC_FILE)
        secret = _read_key(dir_fd, path, SECRET_FILE)
    finally:
        os.close(dir_fd)
    if zmq.curve_public(secret) != public:
        raise ValueError(
            f"{os.path.join(path, PUBLIC_FILE)} is not the public key of {os.path.join(path, SECRET_FILE)} "
            "(files from two clusters, or a partial copy?): copy both files from the head's key "
            "directory, or join again with the head's token")
    return ClusterKeys(public, secret)


def _check_private(st: os.stat_result, path: str, what: str, chmod: str) -> None:
    """PermissionError unless `st` is owned by this user and closed to group and others."""
    uid = os.geteuid()
    if st.st_uid != uid:
        raise PermissionError(
            f"{what} {path} is owned by uid {st.st_uid}, not by this user (uid {uid}): another user "
            "could have read or planted the cluster key. Use a directory of your own, or remove this "
            "one and make a new cluster key")
    if st.st_mode & 0o077:
        raise PermissionError(
            f"{what} {path} has mode {stat.S_IMODE(st.st_mode):04o}: group or others can access it. "
            f"Run `chmod {chmod} {path}`; if others could have read the key, make a new cluster key")


def _open_dir(path: str) -> int:
    """An fd of the key directory, checked with lstat (a symlink is refused) and then
    fstat on the fd itself, so that it cannot be swapped between check and use."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"key directory {path} does not exist: `zray start --head` makes the cluster key, "
            "and a joining node gets it from the head's token") from None
    if stat.S_ISLNK(st.st_mode):
        raise PermissionError(
            f"key directory {path} is a symlink, which is refused (whoever can change the link "
            "chooses the key): give the real directory's path")
    if not stat.S_ISDIR(st.st_mode):
        raise PermissionError(f"key directory {path} is not a directory: give a directory's path")
    _check_private(st, path, "key directory", "700")
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    opened = os.fstat(fd)
    if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        raise PermissionError(f"key directory {path} was replaced while it was being checked")
    return fd


def _exists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _read_key(dir_fd: int, dirpath: str, name: str) -> bytes:
    """One key file's key: lstat-checked, then opened without following links."""
    path = os.path.join(dirpath, name)
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"key file {path} is missing: copy {PUBLIC_FILE} and {SECRET_FILE} from the head's key "
            "directory, or join again with the head's token") from None
    if stat.S_ISLNK(st.st_mode):
        raise PermissionError(f"key file {path} is a symlink, which is refused: put the file itself there")
    if not stat.S_ISREG(st.st_mode):
        raise PermissionError(f"key file {path} is not a regular file: remove it and make a new cluster key")
    _check_private(st, path, "key file", "600")
    # O_NONBLOCK: were it swapped for a fifo after lstat, open must not hang.
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
            raise PermissionError(f"key file {path} was replaced while it was being checked")
        data = os.read(fd, 4 * _KEY_CHARS)
    finally:
        os.close(fd)
    key = data[:-1] if data.endswith(b"\n") else data
    _check_key(key, f"key file {path}")
    return key


def _write_atomic(dir_fd: int, dirpath: str, name: str, key: bytes) -> None:
    """Write `key` as `name`: a 0600 temp file made with O_EXCL (never readable by
    others, not even for a moment, and never someone else's file), fsynced, renamed."""
    tmp = f".{name}.{secrets.token_hex(8)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, 0o600, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(fd, 0o600)  # the umask can only have narrowed it: make it exact
            f.write(key + b"\n")
            f.flush()
            os.fsync(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        raise


# ---- join token -----------------------------------------------------------------------

def token(keys: ClusterKeys) -> str:
    """The secret key as a printable token for `zray start --address HOST:PORT --token ...`.

    Whoever holds it can join the cluster and run code on it: print it only to the
    user who started the head.
    """
    raw = z85.decode(keys.secret)
    return TOKEN_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def from_token(text: str) -> ClusterKeys:
    """The key pair of a `token`; ValueError saying what is wrong with a bad one
    (never echoing it: a near-miss token is nearly the secret)."""
    if not isinstance(text, str):
        raise ValueError(f"a cluster token is a str, not {type(text).__name__}")
    text = text.strip()  # a pasted token often brings a newline or spaces along
    if not text.startswith(TOKEN_PREFIX):
        raise ValueError(
            f"a cluster token starts with {TOKEN_PREFIX!r}, this one does not: copy the whole token "
            "that `zray start --head` printed")
    body = text[len(TOKEN_PREFIX):]
    if len(body) != _TOKEN_CHARS:
        raise ValueError(
            f"a cluster token has {_TOKEN_CHARS} characters after {TOKEN_PREFIX!r}, this one has "
            f"{len(body)}: it was cut or extended; copy the whole token")
    if not body.isascii():
        raise ValueError("the cluster token has a non-ASCII character: copy the token again")
    for i, ch in enumerate(body):
        if not (ch.isalnum() or ch in "-_"):
            raise ValueError(f"character {i + 1} of the cluster token is not one a token has "
                             "(letters, digits, - and _): copy the token again")
    raw = base64.urlsafe_b64decode(body + "=")
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != body:   # its last character
        raise ValueError("the cluster token's last character is wrong: copy the token again")
    secret = z85.encode(raw)
    return ClusterKeys(zmq.curve_public(secret), secret)


# ---- sockets ----------------------------------------------------------------------------

def _check_unused(sock: zmq.Socket, caller: str) -> None:
    # libzmq copies security options into each listener or connection when it is made:
    # an endpoint bound or connected before would stay unprotected.
    if sock.getsockopt(zmq.LAST_ENDPOINT):
        raise RuntimeError(f"{caller}() must be called before the socket binds or connects")


def serve(sock: zmq.Socket, keys: ClusterKeys) -> None:
    """Make `sock` a CURVE server with the cluster's pair, its clients checked by the
    ZapHandler of its context. Call before `bind`, after ZapHandler(ctx, ...)."""
    _check_unused(sock, "serve")
    guard = _guarded.get(sock.context)
    if guard is None:
        raise RuntimeError(
            "serve(): no ZapHandler in this socket's zmq context; create ZapHandler(ctx, keys, log) "
            "first, or every client of this socket would be refused")
    if guard != keys.public:
        raise RuntimeError("serve(): this context's ZapHandler admits another cluster's key")
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
    try:
        # Fail closed: without it, a CURVE server whose context has no ZAP handler
        # (not yet bound, or closed) admits ANY client key (libzmq's "Stonehouse").
        sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
    except zmq.ZMQError as exc:
        raise RuntimeError(
            f"serve(): this libzmq ({zmq.zmq_version()}) lacks ZMQ_ZAP_ENFORCE_DOMAIN, without which a "
            "server would admit anyone while no ZAP handler answers; use pyzmq's wheel "
            "(its bundled libzmq has it)") from exc


def connect_as_client(sock: zmq.Socket, keys: ClusterKeys) -> None:
    """Make `sock` a CURVE client presenting the cluster's pair, that talks only to a
    server holding the cluster's secret. Call before `connect`."""
    _check_unused(sock, "connect_as_client")
    sock.setsockopt(zmq.CURVE_SERVERKEY, keys.public)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)


def zap_reply(frames: list[bytes], allowed: bytes) -> list[bytes] | None:
    """The reply to one ZAP request as a ROUTER received it, or None to drop it.

    `allowed` is the one client key admitted (32 raw bytes). Pure, and total over any
    list of frames: 200 only for a well-formed CURVE request of domain ZAP_DOMAIN
    presenting `allowed`; 400 for any other well-formed request; 500 for a malformed
    one with a request id to answer; None (drop) without an envelope and request id.
    """
    # [routing id, empty delimiter (libzmq's session speaks REQ), version, request id,
    #  domain, address, identity, mechanism, credentials...]
    if len(frames) < 4 or frames[1] != b"":
        return None
    routing_id, body = frames[0], frames[2:]
    if len(body) < 6 or body[0] != b"1.0":
        status, text = b"500", b"malformed ZAP request"
    elif body[2] != ZAP_DOMAIN:
        status, text = b"400", b"unknown ZAP domain"
    elif body[5] != b"CURVE":
        status, text = b"400", b"CURVE required"
    elif len(body) != 7 or not hmac.compare_digest(body[6], allowed):
        status, text = b"400", b"not a member of this cluster"
    else:
        status, text = b"200", b"OK"
    return [routing_id, b"", b"1.0", body[1], status, text, b"", b""]


class ZapHandler:
    """Authorizes clients of the CURVE server sockets of one zmq context (ZMQ RFC 27).

    Served by the thread that made it: register `sock` in that thread's poller and
    call `handle()` when it is readable. Make it before any server socket of `ctx`
    binds and close it after they are closed: only one may exist per context
    (RuntimeError otherwise). `accepted` and `refused` count the answers.
    """

    def __init__(self, ctx: zmq.Context, keys: ClusterKeys, log: _Log, *,
                 drain_limit: int = Config.drain_limit,
                 log_period_s: float = REFUSAL_LOG_PERIOD_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._allowed = z85.decode(keys.public)
        self._log = log
        self._drain_limit = drain_limit
        self._log_period_s = log_period_s
        self._clock = clock
        self._next_log_at = float("-inf")
        self._unlogged = 0  # refusals since the last log line
        self.accepted = 0
        self.refused = 0
        self._ctx = ctx
        self.sock: zmq.Socket = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        try:
            self.sock.bind(ZAP_ENDPOINT)
        except zmq.ZMQError as exc:
            self.sock.close(0)
            if exc.errno == zmq.EADDRINUSE:
                raise RuntimeError(
                    "a ZAP handler is already bound in this zmq context: one handler serves all "
                    "of a context's server sockets") from exc
            raise
        _guarded[ctx] = keys.public

    def handle(self) -> int:
        """Answer the pending requests (up to drain_limit) without blocking; never
        raises on a bad request. Returns how many requests it took."""
        taken = 0
        while taken < self._drain_limit:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break  # nothing more pending
            taken += 1
            reply = zap_reply(frames, self._allowed)
            if reply is not None and reply[4] == b"200":
                self.accepted += 1
            else:
                self._refusal(frames, reply)
            if reply is not None:
                try:
                    self.sock.send_multipart(reply, zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass  # the handshake's connection is gone: nobody to answer
        return taken

    def _refusal(self, frames: list[bytes], reply: list[bytes] | None) -> None:
        self.refused += 1
        self._unlogged += 1
        now = self._clock()
        if now < self._next_log_at:
            return
        peer = frames[5] if len(frames) > 5 else b"?"
        reason = reply[5] if reply is not None else b"no ZAP envelope"
        self._log.warning(
            "refused a connection without the cluster key",
            peer=peer[:64].decode("utf-8", "backslashreplace"),
            reason=reason.decode(), refusals=self._unlogged,
            note=f"at most one such line per {self._log_period_s:g} s; refusals counts those since the last")
        self._unlogged = 0
        self._next_log_at = now + self._log_period_s

    def close(self) -> None:
        """Stop answering (idempotent). Close the context's server sockets first: they
        refuse every client once no handler is bound."""
        if self.sock.closed:
            return
        _guarded.pop(self._ctx, None)
        # unbind first: close alone frees the endpoint later, on libzmq's reaper thread,
        # and a new handler bound meanwhile would fail with EADDRINUSE.
        try:
            self.sock.unbind(ZAP_ENDPOINT)
        except zmq.ZMQError:
            pass
        self.sock.close(0)


def warn_insecure(log: _Log) -> None:
    """Log loudly that tcp ports run without CURVE (`--insecure`) and what that means."""
    log.warning(
        "INSECURE MODE (--insecure): tcp ports are neither encrypted nor authenticated. zray unpickles "
        "what arrives, so ANYONE WHO CAN REACH THESE PORTS CAN RUN ANY CODE AS THIS USER "
        f"(uid {os.geteuid()}) and read all traffic. Use it only on an isolated, trusted network; "
        "start without --insecure to require the cluster key.")
