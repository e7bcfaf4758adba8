"""Last-known-good rule set on disk, shared by the Python agent and the nginx modules.

File format: one ASCII header line
    RGSNAP1 <crc32 of payload, 8 lowercase hex digits> <payload length in bytes>\n
followed by the payload: msgpack map {"namespace": str, "generation": str, "revision": int,
"written_at": int, "rules": {rule id: the rule's msgpack bytes exactly as stored in Redis}}. `written_at` (unix
seconds) is when the rules were last confirmed current with Redis, not when the file was written (a checkpoint
comes seconds after the last change, in both gateways): a reader counts staleness from it. Written as tmp file +
fsync + rename (+ fsync of the directory), so readers never see half a file.
"""
from __future__ import annotations

import os
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import msgpack

from .errors import CorruptDataError, SnapshotError
from .schema import decode_rule

MAGIC = b"RGSNAP1"
MAX_HEADER = 64
PIECE = 64 * 1024  # bytes of payload per piece of a file encoded stepwise


@dataclass(frozen=True)
class Snapshot:
    """A rule set as saved on disk."""

    namespace: str
    generation: str
    revision: int
    written_at: int
    raw_rules: Mapping[str, bytes]  # not copied: never written once in a Snapshot

    def rules(self) -> dict[str, dict]:
        """Return the validated rules; raise SnapshotError when one fails validation."""
        try:
            return {k: decode_rule(v, where=f"snapshot rule {k!r}") for k, v in self.raw_rules.items()}
        except CorruptDataError as exc:
            raise SnapshotError(str(exc)) from None


def encode_snapshot(snap: Snapshot, pause: Callable[[], None] | None = None) -> bytes:
    """Return the bytes of a snapshot file (the rules in raw_rules' order); with `pause`, encode rule by rule,
    calling pause() between rules (the same bytes: a map's msgpack is its header, then each key and value in
    order)."""
    if pause is None:
        payload = msgpack.packb({"namespace": snap.namespace, "generation": snap.generation,
                                 "revision": snap.revision, "written_at": snap.written_at,
                                 "rules": dict(snap.raw_rules)}, use_bin_type=True)
        return _header(zlib.crc32(payload), len(payload)) + payload
    return b"".join(encode_pieces(snap, pause))


def _header(crc: int, length: int) -> bytes:
    return b"%s %08x %d\n" % (MAGIC, crc, length)


def encode_pieces(snap: Snapshot, pause: Callable[[], None], piece: int = PIECE) -> list[bytes]:
    """Return the snapshot file's bytes as its header line, then pieces of about `piece` bytes of payload.

    Rule by rule with pause() between rules, the checksum taken piece by piece: nothing of ~O(size)
    runs between two pauses (joining 3 MB and its CRC took ~2 ms in one block at 10,000 rules)."""
    packer = msgpack.Packer(use_bin_type=True, autoreset=False)
    pack = packer.pack
    head = {"namespace": snap.namespace, "generation": snap.generation, "revision": snap.revision,
            "written_at": snap.written_at}
    packer.pack_map_header(len(head) + 1)
    for key, value in head.items():
        pack(key)
        pack(value)
    pack("rules")
    packer.pack_map_header(len(snap.raw_rules))
    pieces, crc, length, size = [b""], 0, 0, 0
    for rule_id, value in snap.raw_rules.items():
        pause()
        pack(rule_id)
        pack(value)
        size += len(value)
        if size >= piece:
            chunk = packer.bytes()
            packer.reset()
            pieces.append(chunk)
            crc, length, size = zlib.crc32(chunk, crc), length + len(chunk), 0
    chunk = packer.bytes()
    pieces.append(chunk)
    pieces[0] = _header(zlib.crc32(chunk, crc), length + len(chunk))
    return pieces


def decode_snapshot(data: bytes) -> Snapshot:
    """Return the Snapshot in data; raise SnapshotError when truncated, corrupt or foreign."""
    nl = data.find(b"\n", 0, MAX_HEADER)
    if nl < 0:
        raise SnapshotError("not a rulegate snapshot (no header line)")
    parts = data[:nl].split(b" ")
    if len(parts) != 3 or parts[0] != MAGIC or len(parts[1]) != 8 or not parts[2].isdigit():
        raise SnapshotError("not a rulegate snapshot (bad header)")
    payload = data[nl + 1:]
    if len(payload) != int(parts[2]):
        raise SnapshotError(f"truncated snapshot: {len(payload)} of {int(parts[2])} payload bytes")
    if b"%08x" % zlib.crc32(payload) != parts[1]:
        raise SnapshotError("snapshot checksum mismatch")
    try:
        body = msgpack.unpackb(payload, raw=False)
        rules = body["rules"]
        if not isinstance(rules, dict) or not all(isinstance(v, bytes) for v in rules.values()):
            raise TypeError("rules")
        return Snapshot(str(body["namespace"]), str(body["generation"]), int(body["revision"]),
                        int(body["written_at"]), rules)
    except (KeyError, TypeError, ValueError, msgpack.UnpackException) as exc:
        raise SnapshotError(f"undecodable snapshot payload ({exc.__class__.__name__})") from None


def write_snapshot(path: str | os.PathLike, snap: Snapshot, *, pause: Callable[[], None] | None = None,
                   run_io: Callable[..., None] | None = None) -> None:
    """Atomically replace the file at path with snap (tmp + fsync + rename + dir fsync).

    `pause`: encode rule by rule, calling it between rules (`encode_pieces`); `run_io(fn, *args)`, when
    given, runs the file writes (the sync loop's: in an OS thread under gevent, so the fsyncs do not
    block the other greenlets).
    """
    pieces = [encode_snapshot(snap)] if pause is None else encode_pieces(snap, pause)
    if run_io is None:
        _write_file(Path(path), pieces)
    else:
        run_io(_write_file, Path(path), pieces)


def _write_file(target: Path, pieces: list[bytes]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for piece in pieces:
                f.write(piece)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_snapshot(path: str | os.PathLike) -> Snapshot:
    """Return the snapshot at path; raise SnapshotError when missing, truncated or corrupt."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SnapshotError(f"cannot read snapshot {path}: {exc.strerror}") from None
    return decode_snapshot(data)


def make_snapshot(namespace: str, generation: str, revision: int, raw_rules: Mapping[str, bytes],
                  written_at: float | None = None) -> Snapshot:
    """Return a Snapshot stamped `written_at` (default: now): when its rules were last known current, which a
    reader counts staleness from (raw_rules is kept, not copied: never write it after)."""
    return Snapshot(namespace, generation, revision, int(time.time() if written_at is None else written_at),
                    raw_rules)
