"""implicit_vae.files: a file is replaced whole or not at all, also with several writers at once."""

from __future__ import annotations

import os
import threading

import pytest

from implicit_vae.files import atomic_write, atomic_write_text


def test_a_new_file_is_an_ordinary_file_with_the_text(tmp_path):
    path = atomic_write_text(tmp_path / "sub" / "result.json", "{\"a\": 1}\n")
    assert path.read_text() == "{\"a\": 1}\n"
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
    assert sorted(p.name for p in path.parent.iterdir()) == ["result.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = atomic_write_text(tmp_path / "table.md", "old\n")

    def half_then_fail(handle):
        handle.write(b"new, but only ha")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.md"]


def test_concurrent_writers_each_replace_the_file_whole(tmp_path):
    """Two benchmark processes sharing a results folder rewrite the same report after each run;
    with one fixed temporary name, one writer's rename moved the other's file away and it crashed
    with FileNotFoundError. Eight threads × 200 writes of distinct contents must all succeed, and
    the file must always hold one writer's whole text."""
    path = tmp_path / "report.json"
    texts = [f"writer {i}\n" * 2000 for i in range(8)]
    errors: list[BaseException] = []
    seen: set[str] = set()

    def writer(text: str) -> None:
        try:
            for _ in range(200):
                atomic_write_text(path, text)
                seen.add(path.read_text())
        except BaseException as err:  # noqa: BLE001 - collected and reported by the test
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert seen <= set(texts) and path.read_text() in texts
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
