"""zray._keys: key files and their checks, join tokens, and CURVE + ZAP on real tcp
sockets (members get through; other keys, plain clients and raw bytes do not)."""
from __future__ import annotations

import os
import shlex
import shutil
import socket
import time
from collections.abc import Callable

import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st
from zmq.utils import z85
from zmq.utils.monitor import recv_monitor_message

from zray import _keys as K

NOBODY = 65534


class Recorder:
    """A logger that keeps its warning lines."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, dict]] = []

    def warning(self, event: str, **kw) -> None:
        self.lines.append((event, kw))


def new_keys() -> K.ClusterKeys:
    return K.ClusterKeys(*zmq.curve_keypair())


def mode(path) -> int:
    return os.lstat(path).st_mode & 0o777


# ---- key files ------------------------------------------------------------------------

@pytest.fixture
def keydir(tmp_path):
    return tmp_path / "keys"


def test_create_load_round_trip(keydir):
    keys = K.create(keydir)
    assert mode(keydir) == 0o700
    assert sorted(os.listdir(keydir)) == sorted([K.PUBLIC_FILE, K.SECRET_FILE])  # no temp file left
    for name in (K.PUBLIC_FILE, K.SECRET_FILE):
        assert mode(keydir / name) == 0o600
    assert (keydir / K.SECRET_FILE).read_bytes() == keys.secret + b"\n"
    assert K.load(keydir) == keys
    assert keys.secret.decode() not in repr(keys)   # logging keys never leaks the secret


def test_create_ignores_a_permissive_umask(keydir):
    old = os.umask(0)
    try:
        K.create(keydir)
    finally:
        os.umask(old)
    assert mode(keydir) == 0o700
    assert mode(keydir / K.SECRET_FILE) == 0o600


def test_create_in_an_existing_private_directory(keydir):
    keydir.mkdir(mode=0o700)
    keys = K.create(keydir)
    assert K.load(keydir) == keys


def test_create_refuses_to_overwrite_keys(keydir):
    keys = K.create(keydir)
    with pytest.raises(FileExistsError, match="load"):
        K.create(keydir)
    assert K.load(keydir) == keys


def test_create_refuses_an_open_directory(keydir):
    keydir.mkdir()
    keydir.chmod(0o755)
    with pytest.raises(PermissionError, match=r"mode 0755.*chmod 700"):
        K.create(keydir)
    assert os.listdir(keydir) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
def test_create_refuses_a_directory_of_another_uid(keydir):
    keydir.mkdir(mode=0o700)
    os.chown(keydir, NOBODY, NOBODY)
    with pytest.raises(PermissionError, match=f"owned by uid {NOBODY}"):
        K.create(keydir)


def test_create_refuses_a_symlinked_directory(tmp_path, keydir):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    keydir.symlink_to(real)
    with pytest.raises(PermissionError, match="symlink"):
        K.create(keydir)
    assert os.listdir(real) == []


def test_load_refuses_a_group_readable_key_file(keydir):
    K.create(keydir)
    (keydir / K.SECRET_FILE).chmod(0o640)
    with pytest.raises(PermissionError, match=rf"{K.SECRET_FILE} has mode 0640.*chmod 600"):
        K.load(keydir)


def test_load_refuses_an_open_directory(keydir):
    K.create(keydir)
    keydir.chmod(0o711)
    with pytest.raises(PermissionError, match=r"key directory .* has mode 0711"):
        K.load(keydir)


def test_load_refuses_a_symlinked_key_file(tmp_path, keydir):
    K.create(keydir)
    elsewhere = tmp_path / "secret-copy"
    shutil.copy(keydir / K.SECRET_FILE, elsewhere)
    elsewhere.chmod(0o600)
    (keydir / K.SECRET_FILE).unlink()
    (keydir / K.SECRET_FILE).symlink_to(elsewhere)
    with pytest.raises(PermissionError, match=rf"{K.SECRET_FILE} is a symlink"):
        K.load(keydir)


def test_load_refuses_a_symlinked_directory(tmp_path, keydir):
    K.create(keydir)
    link = tmp_path / "link"
    link.symlink_to(keydir)
    with pytest.raises(PermissionError, match=r"key directory .*link is a symlink"):
        K.load(link)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
def test_load_refuses_a_directory_or_file_of_another_uid(keydir):
    K.create(keydir)
    os.chown(keydir / K.PUBLIC_FILE, NOBODY, NOBODY)
    with pytest.raises(PermissionError, match=rf"key file .*{K.PUBLIC_FILE} is owned by uid {NOBODY}"):
        K.load(keydir)
    os.chown(keydir, NOBODY, NOBODY)
    with pytest.raises(PermissionError, match=f"key directory .* is owned by uid {NOBODY}"):
        K.load(keydir)


def test_load_refuses_a_mismatched_pair(tmp_path, keydir):
    K.create(keydir)
    other = K.create(tmp_path / "other")
    (keydir / K.PUBLIC_FILE).write_bytes(other.public + b"\n")
    with pytest.raises(ValueError, match=rf"{K.PUBLIC_FILE} is not the public key of .*{K.SECRET_FILE}"):
        K.load(keydir)


def test_load_refuses_a_corrupt_key_file(keydir):
    K.create(keydir)
    (keydir / K.SECRET_FILE).write_bytes(b"not a key\n")
    with pytest.raises(ValueError, match=rf"key file .*{K.SECRET_FILE}: a key is 40 Z85 characters"):
        K.load(keydir)


def test_load_names_what_is_missing(tmp_path, keydir):
    with pytest.raises(FileNotFoundError, match=r"key directory .* does not exist"):
        K.load(keydir)
    K.create(keydir)
    (keydir / K.SECRET_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=rf"key file .*{K.SECRET_FILE} is missing"):
        K.load(keydir)


def test_cluster_keys_checks_the_pair():
    a, b = new_keys(), new_keys()
    with pytest.raises(ValueError, match="not the public key"):
        K.ClusterKeys(a.public, b.secret)
    with pytest.raises(ValueError, match="40 Z85 characters"):
        K.ClusterKeys(a.public[:-1], a.secret)


# ---- tokens -----------------------------------------------------------------------------

def test_token_round_trip():
    keys = new_keys()
    text = K.token(keys)
    assert text.startswith("zray2-") and shlex.quote(text) == text   # pastes into a shell as is
    assert K.from_token(text) == keys
    assert K.from_token(f"  {text}\n") == keys   # as pasted


def test_a_joining_node_saves_the_tokens_keys(tmp_path):
    keys = new_keys()
    K.save(tmp_path / "node-keys", K.from_token(K.token(keys)))
    assert mode(tmp_path / "node-keys") == 0o700
    assert K.load(tmp_path / "node-keys") == keys


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _bad_tokens():
    secret = K.token(new_keys()).removeprefix("zray2-")
    return {
        "no prefix": (secret, "starts with 'zray2-'"),
        "wrong prefix": ("zray1-" + secret, "starts with 'zray2-'"),
        "cut": ("zray2-" + secret[:-3], "this one has 40"),
        "extended": ("zray2-" + secret + "A", "this one has 44"),
        "not base64url": ("zray2-" + secret[:10] + "~" + secret[11:], "character 11"),
        # 32 bytes leave the last character's two low bits zero; one that sets them
        "non-canonical": ("zray2-" + secret[:42] + _B64[_B64.index(secret[42]) + 1],
                          "last character"),
        "non-ascii": ("zray2-" + secret[:42] + "é", "non-ASCII"),
        "empty": ("", "starts with"),
    }, secret


@pytest.mark.parametrize("kind", sorted(_bad_tokens()[0]))
def test_bad_tokens_say_what_is_wrong(kind):
    cases, secret = _bad_tokens()
    text, message = cases[kind]
    with pytest.raises(ValueError, match=message) as info:
        K.from_token(text)
    assert secret[:20] not in str(info.value)   # a near-miss token is nearly the secret


# ---- CURVE and ZAP on real sockets --------------------------------------------------------

class Net:
    """One zmq context and every socket a test makes in it, all closed at the end."""

    def __init__(self) -> None:
        self.ctx = zmq.Context()
        self.socks: list[zmq.Socket] = []

    def socket(self, kind: int) -> zmq.Socket:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        self.socks.append(sock)
        return sock

    def monitor(self, sock: zmq.Socket) -> zmq.Socket:
        mon = sock.get_monitor_socket()
        mon.setsockopt(zmq.LINGER, 0)
        self.socks.append(mon)
        return mon

    def close(self) -> None:
        for sock in reversed(self.socks):
            sock.close(0)
        self.ctx.term()   # hangs (and times out) if a socket was left open


class Cluster:
    """A ROUTER served with the cluster's keys on tcp://127.0.0.1, its ZapHandler and its
    monitor polled by the test thread, as a broker's loop would."""

    def __init__(self, net: Net, keys: K.ClusterKeys) -> None:
        self.net, self.keys, self.log = net, keys, Recorder()
        self.zap = K.ZapHandler(net.ctx, keys, self.log)   # before any server socket binds
        self.server = net.socket(zmq.ROUTER)
        K.serve(self.server, keys)
        self.port = self.server.bind_to_random_port("tcp://127.0.0.1")
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.received: list[list[bytes]] = []
        self.server_events: list[int] = []
        self.watched: dict[zmq.Socket, list[int]] = {self.net.monitor(self.server): self.server_events}

    def client(self, keys: K.ClusterKeys | None, events: list[int] | None = None) -> zmq.Socket:
        """A DEALER connected with `keys` (None: no CURVE); its monitor's events are
        appended to `events` if given (watched from before it connects: none missed)."""
        sock = self.net.socket(zmq.DEALER)
        if keys is not None:
            K.connect_as_client(sock, keys)
        if events is not None:
            self.watch(sock, events)
        sock.connect(self.address)
        return sock

    def watch(self, sock: zmq.Socket, events: list[int]) -> None:
        self.watched[self.net.monitor(sock)] = events

    def pump(self, until: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Serve the ZAP handler, the server and the monitors until `until()` holds
        (True) or `timeout` passes (False)."""
        deadline = time.monotonic() + timeout
        poller = zmq.Poller()
        for sock in [self.zap.sock, self.server, *self.watched]:
            if not sock.closed:
                poller.register(sock, zmq.POLLIN)
        while not until():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            for sock, _ in poller.poll(left * 1000):
                if sock is self.zap.sock:
                    self.zap.handle()
                elif sock is self.server:
                    self.received.append(self.server.recv_multipart())
                else:
                    self.watched[sock].append(recv_monitor_message(sock)["event"])
        return True

    def nothing_arrives(self, within: float = 0.5) -> bool:
        return not self.pump(lambda: bool(self.received), timeout=within)

    def round_trip(self, client: zmq.Socket, payload: bytes) -> bool:
        client.send(payload)
        if not self.pump(lambda: any(m[-1] == payload for m in self.received)):
            return False
        routing_id = next(m[0] for m in self.received if m[-1] == payload)
        self.server.send_multipart([routing_id, b"re:" + payload])
        return bool(client.poll(5000)) and client.recv() == b"re:" + payload


@pytest.fixture
def net():
    n = Net()
    yield n
    n.close()


@pytest.fixture
def cluster(net):
    c = Cluster(net, new_keys())
    yield c
    c.server.close(0)   # server sockets before their handler
    c.zap.close()


def test_member_round_trip(cluster):
    events: list[int] = []
    client = cluster.client(cluster.keys, events)
    assert cluster.round_trip(client, b"hello")
    assert cluster.pump(lambda: zmq.EVENT_HANDSHAKE_SUCCEEDED in events)
    assert cluster.zap.accepted >= 1 and cluster.zap.refused == 0


def test_member_keys_from_a_token_get_through(cluster):
    joined = K.from_token(K.token(cluster.keys))
    assert cluster.round_trip(cluster.client(joined), b"token")


def test_a_client_pair_other_than_the_clusters_is_refused_by_zap(cluster):
    # It knows the cluster's public key (the server key) but not its secret.
    intruder = cluster.net.socket(zmq.DEALER)
    public, secret = zmq.curve_keypair()
    intruder.setsockopt(zmq.CURVE_SERVERKEY, cluster.keys.public)
    intruder.setsockopt(zmq.CURVE_PUBLICKEY, public)
    intruder.setsockopt(zmq.CURVE_SECRETKEY, secret)
    events: list[int] = []
    cluster.watch(intruder, events)
    intruder.connect(cluster.address)
    intruder.send(b"import os; os.system('...')")
    assert cluster.pump(lambda: cluster.zap.refused >= 1 and zmq.EVENT_HANDSHAKE_FAILED_AUTH in events)
    assert cluster.nothing_arrives()
    assert cluster.zap.accepted == 0
    (event, fields), *_ = cluster.log.lines
    assert "refused" in event and fields["peer"] == "127.0.0.1"
    assert cluster.round_trip(cluster.client(cluster.keys), b"still serving")


def test_another_clusters_keys_fail_the_handshake(cluster):
    # Its HELLO is sealed for another server key: the server cannot open it, and
    # refuses before ZAP is even asked.
    stranger = cluster.client(new_keys())
    stranger.send(b"hello")
    assert cluster.pump(lambda: zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL in cluster.server_events)
    assert cluster.nothing_arrives()
    assert cluster.zap.accepted == 0
    assert cluster.round_trip(cluster.client(cluster.keys), b"still serving")


def test_plain_client_gets_nothing_through(cluster):
    events: list[int] = []
    plain = cluster.client(None, events)
    plain.send(b"plain")
    assert cluster.pump(lambda: zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL in events)
    assert cluster.nothing_arrives()
    assert cluster.zap.accepted == cluster.zap.refused == 0   # refused before ZAP: wrong mechanism


def test_a_member_does_not_talk_to_a_server_of_another_key(cluster):
    impostor_net = Net()
    impostor = Cluster(impostor_net, new_keys())
    try:
        member = impostor_net.socket(zmq.DEALER)
        K.connect_as_client(member, cluster.keys)
        member.connect(impostor.address)
        member.send(b"for the cluster only")
        assert impostor.pump(lambda: zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL in impostor.server_events
                             or zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL in impostor.server_events)
        assert impostor.nothing_arrives()
    finally:
        impostor.server.close(0)
        impostor.zap.close()
        impostor_net.close()


def _greeting(mechanism: bytes) -> bytes:
    # ZMTP 3.0: signature, version 3.0, mechanism (20 bytes), as-server, filler.
    return b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + mechanism.ljust(20, b"\x00") + b"\x00" * 32


def _command(name: bytes, body: bytes) -> bytes:
    data = bytes([len(name)]) + name + body
    return b"\x04" + bytes([len(data)]) + data


_HELLO = _command(b"HELLO", b"\x01\x00" + b"\x00" * 72 + os.urandom(32 + 8 + 80))
_RAW = {
    "garbage": os.urandom(300),
    # a NULL greeting, READY, then a message frame holding a pickle
    "null greeting and message": _greeting(b"NULL")
    + _command(b"READY", b"\x0bSocket-Type\x00\x00\x00\x06DEALER")
    + b"\x00\x1a" + b"\x80\x04\x95" + b"cos\nsystem\n(S'id'\ntR." + b"\x00\x00\x00",
    "truncated curve hello": _greeting(b"CURVE") + _HELLO[:60],
    "curve hello of random bytes": _greeting(b"CURVE") + _HELLO,
}


@pytest.mark.parametrize("kind", sorted(_RAW))
def test_raw_bytes_change_nothing(cluster, kind):
    with socket.create_connection(("127.0.0.1", cluster.port), timeout=5) as raw:
        try:
            raw.sendall(_RAW[kind])
        except ConnectionError:
            pass   # the server hung up first: as good
    assert cluster.pump(lambda: zmq.EVENT_DISCONNECTED in cluster.server_events)
    assert cluster.received == []
    assert cluster.zap.accepted == 0
    assert cluster.round_trip(cluster.client(cluster.keys), b"after " + kind.encode())


def test_server_whose_handler_closed_refuses_everyone(cluster):
    cluster.zap.close()   # fail closed: no handler means no client, not any client
    events: list[int] = []
    member = cluster.client(cluster.keys, events)
    member.send(b"hello")
    # The server gives up the handshake at once; the client may hear of it only when the
    # handshake times out, so only the server's event is waited for.
    assert cluster.pump(lambda: zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL in cluster.server_events)
    assert zmq.EVENT_HANDSHAKE_SUCCEEDED not in events
    assert cluster.nothing_arrives()


def test_plain_ipc_sockets_of_the_same_context_do_not_go_through_zap(cluster, tmp_path):
    a, b = cluster.net.socket(zmq.PAIR), cluster.net.socket(zmq.PAIR)
    a.bind(f"ipc://{tmp_path}/local")
    b.connect(f"ipc://{tmp_path}/local")
    b.send(b"local")
    # Had the handshake asked the ZAP handler, it would still wait for this thread's answer.
    assert a.poll(5000) and a.recv() == b"local"
    assert not cluster.zap.sock.poll(0)
    assert cluster.zap.accepted == cluster.zap.refused == 0


def _zap_request(request_id: bytes, key: bytes, *, version=b"1.0", domain=K.ZAP_DOMAIN,
                 mechanism=b"CURVE", credentials=None, address=b"127.0.0.1") -> list[bytes]:
    creds = [key] if credentials is None else credentials
    return [b"", version, request_id, domain, address, b"", mechanism, *creds]


def test_zap_handler_survives_malformed_requests(cluster):
    key = z85.decode(cluster.keys.public)
    other = z85.decode(new_keys().public)
    sent = {
        b"short": ([b"", b"1.0"], None),
        b"no delimiter": ([b"1.0", b"x", K.ZAP_DOMAIN, b"a", b"", b"CURVE", key], None),
        b"v2": (_zap_request(b"v2", key, version=b"2.0"), b"500"),
        b"few": ([b"", b"1.0", b"few", K.ZAP_DOMAIN], b"500"),
        b"nocred": (_zap_request(b"nocred", key, credentials=[]), b"400"),
        b"twocred": (_zap_request(b"twocred", key, credentials=[key, key]), b"400"),
        b"shortkey": (_zap_request(b"shortkey", key, credentials=[key[:31]]), b"400"),
        b"domain": (_zap_request(b"domain", key, domain=b"other"), b"400"),
        b"plain": (_zap_request(b"plain", key, mechanism=b"PLAIN", credentials=[b"u", b"p"]), b"400"),
        b"null": (_zap_request(b"null", key, mechanism=b"NULL", credentials=[]), b"400"),
        b"other": (_zap_request(b"other", other, address=b"\xff" * 100_000), b"400"),
        b"member": (_zap_request(b"member", key), b"200"),   # last: its answer means all were taken
    }
    fake = cluster.net.socket(zmq.DEALER)
    fake.connect(K.ZAP_ENDPOINT)
    for frames, _ in sent.values():
        fake.send_multipart(frames)
    replies: dict[bytes, list[bytes]] = {}

    def answered() -> bool:
        while fake.poll(0):
            reply = fake.recv_multipart()
            replies[reply[2]] = reply
        return b"member" in replies

    assert cluster.pump(answered)
    assert {rid: r[3] for rid, r in replies.items()} == {
        rid: status for rid, (_, status) in sent.items() if status is not None}
    assert all(r[:2] == [b"", b"1.0"] and len(r) == 7 for r in replies.values())
    assert cluster.zap.accepted == 1 and cluster.zap.refused == len(sent) - 1
    assert cluster.round_trip(cluster.client(cluster.keys), b"still serving")


def test_refusals_are_logged_at_most_once_a_period(net):
    keys, log, now = new_keys(), Recorder(), [100.0]
    zap = K.ZapHandler(net.ctx, keys, log, log_period_s=10.0, clock=lambda: now[0])
    try:
        fake = net.socket(zmq.DEALER)
        fake.connect(K.ZAP_ENDPOINT)

        def flood(n: int) -> None:
            for i in range(n):
                fake.send_multipart(_zap_request(b"%d" % i, b"\x00" * 32))
            got = 0
            while got < n:
                assert zap.sock.poll(5000)
                zap.handle()
                while fake.poll(0):
                    fake.recv_multipart()
                    got += 1

        flood(50)
        assert zap.refused == 50 and [kw["refusals"] for _, kw in log.lines] == [1]
        now[0] += 9.9
        flood(5)
        assert len(log.lines) == 1
        now[0] += 0.1
        flood(1)
        assert [kw["refusals"] for _, kw in log.lines] == [1, 55]
    finally:
        zap.close()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40) | st.sampled_from([b"", b"1.0", K.ZAP_DOMAIN, b"CURVE", b"\x01" * 32]),
                max_size=10))
def test_zap_reply_is_total_and_admits_only_the_key(frames):
    key = b"\x01" * 32
    reply = K.zap_reply(frames, key)
    if reply is None:
        return
    assert len(reply) == 8 and reply[:3] == [frames[0], b"", b"1.0"] and reply[3] == frames[3]
    if reply[4] == b"200":
        assert frames[1] == b"" and frames[2:] == [b"1.0", frames[3], K.ZAP_DOMAIN, frames[5], frames[6],
                                                    b"CURVE", key]


def test_serve_and_connect_refuse_misuse(net):
    keys = new_keys()
    early = net.socket(zmq.ROUTER)
    with pytest.raises(RuntimeError, match="no ZapHandler"):
        K.serve(early, keys)
    zap = K.ZapHandler(net.ctx, keys, Recorder())
    try:
        with pytest.raises(RuntimeError, match="already bound"):
            K.ZapHandler(net.ctx, keys, Recorder())
        with pytest.raises(RuntimeError, match="another cluster"):
            K.serve(early, new_keys())
        early.bind("tcp://127.0.0.1:*")
        with pytest.raises(RuntimeError, match="before the socket binds"):
            K.serve(early, keys)
        client = net.socket(zmq.DEALER)
        client.connect("tcp://127.0.0.1:1")
        with pytest.raises(RuntimeError, match="before the socket binds or connects"):
            K.connect_as_client(client, keys)
    finally:
        zap.close()
        zap.close()   # idempotent
    K.ZapHandler(net.ctx, keys, Recorder()).close()   # the endpoint is free again at once


def test_warn_insecure_says_what_it_means():
    log = Recorder()
    K.warn_insecure(log)
    (event, _), = log.lines
    assert "--insecure" in event and "ANYONE" in event and "RUN ANY CODE" in event
