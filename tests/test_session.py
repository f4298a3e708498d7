"""Finding the cluster to join on this machine: only this user's own session
directories (mode 0700, no symlinks) with a socket of its own count; the others are
skipped and named (connecting to another user's socket lets that user answer with a
pickle)."""
from __future__ import annotations

import os
import socket

import pytest

from zray import _session

_listening: list[socket.socket] = []   # the fake brokers' sockets, closed after each test


def fake_session(root, name: str, uid: int | None = None, mode: int = 0o700) -> str:
    path = os.path.join(root, "zray-" + name)
    os.mkdir(path)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(os.path.join(path, "node.sock"))
    sock.listen(8)   # a live session: something answers at its socket
    _listening.append(sock)
    _session.write_node_info(path, b"n" * 16, "tcp://10.0.0.1:6379", "")
    if uid is not None:
        for p in (path, os.path.join(path, "node.sock"), os.path.join(path, "node.json")):
            os.chown(p, uid, uid)
    os.chmod(path, mode)
    return path


@pytest.fixture
def tmp_root(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    yield str(tmp_path)
    while _listening:
        _listening.pop().close()


def test_auto_takes_only_this_users_private_sessions(tmp_root):
    mine = fake_session(tmp_root, "mine")
    fake_session(tmp_root, "other", uid=65534)
    fake_session(tmp_root, "open", mode=0o755)
    os.symlink(mine, os.path.join(tmp_root, "zray-link"))
    found, skipped = _session.sessions()
    assert [n.session_dir for n in found] == [mine]
    assert len(skipped) == 3
    assert any("uid 65534" in s for s in skipped) and any("mode is 755" in s for s in skipped)
    assert any("symlink" in s for s in skipped)
    assert _session.find("auto").session_dir == mine


def test_another_users_session_is_refused_by_name(tmp_root):
    other = fake_session(tmp_root, "other", uid=65534)
    with pytest.raises(ConnectionError, match="uid 65534"):
        _session.find(other)
    with pytest.raises(ConnectionError, match="no zray cluster is running"):
        _session.find("auto")


def test_a_head_address_finds_the_local_node_of_that_cluster(tmp_root):
    mine = fake_session(tmp_root, "mine")
    assert _session.find("10.0.0.1:6379").session_dir == mine
    assert _session.find("tcp://10.0.0.1:6379").node_id == b"n" * 16
    with pytest.raises(ConnectionError, match="no node of that cluster"):
        _session.find("10.0.0.2:6379")
