"""Append-only line spool with an atomically committed read offset, read strictly in order."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 1 << 16


@dataclass(frozen=True)
class SpoolBatch:
    """Lines read from the spool, and the byte offset just after the last of them."""

    lines: list[str]
    end: int


class Spool:
    """Lines appended at the end and consumed from the front, in file order.

    The data file only grows; `<name>.offset` holds the byte offset up to which
    lines have been delivered, replaced atomically on commit. A line counts as
    spooled once append() returns (data fsynced); a crash can leave at most a
    partial, never-acknowledged last line, which opening the spool drops.
    One owner thread at a time: the class holds no lock.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.offset_path = self.path.with_name(self.path.name + ".offset")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch(exist_ok=True)
        _drop_partial_tail(self.path)
        self._offset = self._load_offset()

    @property
    def offset(self) -> int:
        """Byte offset of the first undelivered line."""
        return self._offset

    def append(self, lines: Sequence[str]) -> None:
        """Append lines at the end and fsync: one batch boundary."""
        if not lines:
            return
        for line in lines:
            if not line or "\n" in line or "\r" in line:
                raise ValueError(f"spool line {line!r} must be non-empty and contain no newline")
        data = ("\n".join(lines) + "\n").encode("utf-8")
        with open(self.path, "ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def read(self, max_lines: int) -> SpoolBatch:
        """Up to max_lines undelivered lines from the front, oldest first."""
        if max_lines < 1:
            raise ValueError(f"max_lines {max_lines!r} must be a positive int")
        lines: list[str] = []
        end = self._offset
        with open(self.path, "rb") as f:
            f.seek(end)
            while len(lines) < max_lines:
                raw = f.readline()
                if not raw.endswith(b"\n"):
                    break  # end of file (append() only ever writes whole lines)
                lines.append(raw[:-1].decode("utf-8"))
                end += len(raw)
        return SpoolBatch(lines, end)

    def commit(self, end: int) -> None:
        """Mark every line before byte offset end as delivered (atomic, durable)."""
        size = self.path.stat().st_size
        if not self._offset <= end <= size:
            raise ValueError(
                f"commit offset {end!r} must lie between the current offset {self._offset} "
                f"and the spool size {size} (offsets only move forward)"
            )
        tmp = self.offset_path.with_name(self.offset_path.name + ".tmp")
        with open(tmp, "w", encoding="ascii") as f:
            f.write(f"{end}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.offset_path)
        _fsync_dir(self.path.parent)
        self._offset = end

    def pending(self) -> int:
        """Number of undelivered lines, counted from the file."""
        count = 0
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            while chunk := f.read(_CHUNK):
                count += chunk.count(b"\n")
        return count

    def _load_offset(self) -> int:
        if not self.offset_path.exists():
            return 0
        text = self.offset_path.read_text(encoding="ascii").strip()
        size = self.path.stat().st_size
        if not text.isdigit() or int(text) > size:
            raise ValueError(
                f"spool offset file {self.offset_path} holds {text!r}; expected a byte offset "
                f"between 0 and the spool size {size}"
            )
        return int(text)


def _drop_partial_tail(path: Path) -> None:
    """Truncate a trailing line that lacks its newline (an interrupted append)."""
    size = path.stat().st_size
    if size == 0:
        return
    with open(path, "r+b") as f:
        pos = size
        while pos > 0:
            start = max(0, pos - _CHUNK)
            f.seek(start)
            chunk = f.read(pos - start)
            if pos == size and chunk.endswith(b"\n"):
                return
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                f.truncate(start + cut + 1)
                return
            pos = start
        f.truncate(0)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
