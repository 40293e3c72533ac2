"""Bounded discrete logarithm, its serialised table and the on-disk cache."""

from __future__ import annotations

import os
import struct
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tessera.crypto.dlog import BabyStepTable, DiscreteLog
from tessera.crypto.group import N, Point, base_mul
from tessera.errors import DecodeError, DlogError
from tessera.node import dlog_cache

BOUND = 1 << 10
STEP = 2 * BOUND + 1
MAX_ABS = 40 * STEP + 17  # a few dozen giant steps each way; not a multiple of the step


@cache
def table() -> BabyStepTable:
    return BabyStepTable.build(BOUND)


def solver(max_abs: int = MAX_ABS) -> DiscreteLog:
    return DiscreteLog(table(), max_abs)


def _special_values() -> list[int]:
    vals = {0, 1, BOUND - 1, BOUND, BOUND + 1, STEP - 1, STEP, STEP + 1, MAX_ABS - 1}
    for k in (1, 2, 7, 39, 40):
        vals |= {k * STEP - 1, k * STEP, k * STEP + 1, k * STEP + BOUND, k * STEP - BOUND}
    vals = {v for v in vals if v < MAX_ABS}
    return sorted(vals | {-v for v in vals})


# -- table -------------------------------------------------------------------------------
def test_table_contents() -> None:
    tb = table()
    assert tb.bound == BOUND and len(tb.keys) == BOUND == len(tb.vals)
    assert bool(np.all(tb.keys[1:] >= tb.keys[:-1]))
    assert sorted(int(v) for v in tb.vals) == list(range(1, BOUND + 1))
    for pos in (0, 17, BOUND - 1):
        j = int(tb.vals[pos])
        assert int(tb.keys[pos]) == int.from_bytes(base_mul(j).encode()[1:9], "big")


def test_build_argument_checks() -> None:
    for bad in (0, -1, 1 << 32):
        with pytest.raises(ValueError):
            BabyStepTable.build(bad)
    tiny = BabyStepTable.build(1)
    assert DiscreteLog(tiny, 20).decode(base_mul(-13)) == -13


# -- decoding ------------------------------------------------------------------------------
@pytest.mark.parametrize("m", _special_values())
def test_decode_special_values(m: int) -> None:
    assert solver().decode(base_mul(m)) == m


@given(st.integers(-(MAX_ABS - 1), MAX_ABS - 1))
def test_decode_random_values(m: int) -> None:
    assert solver().decode(base_mul(m)) == m


def test_identity_decodes_to_zero() -> None:
    assert solver().decode(Point.identity()) == 0


@pytest.mark.parametrize(
    "m",
    [MAX_ABS, -MAX_ABS, MAX_ABS + 1, -(MAX_ABS + 1), 3 * MAX_ABS, N // 2, N - MAX_ABS, 2**64],
)
def test_out_of_range_raises(m: int) -> None:
    with pytest.raises(DlogError):
        solver().decode(base_mul(m))


def test_small_max_abs_uses_the_table_only() -> None:
    s = solver(10)
    for m in range(-9, 10):
        assert s.decode(base_mul(m)) == m
    for m in (10, -10, 11, BOUND, -BOUND):
        with pytest.raises(DlogError):
            s.decode(base_mul(m))


@pytest.mark.parametrize("max_abs", [10, MAX_ABS])
def test_out_of_range_multiple_of_giant_step_raises(max_abs: int) -> None:
    s = solver(max_abs)
    steps = -(-max_abs // STEP)
    for m in (steps * STEP, -steps * STEP, -(steps + 1) * STEP):
        assert abs(m) >= max_abs
        with pytest.raises(DlogError):
            s.decode(base_mul(m))


def test_dlog_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        solver(5).decode(base_mul(100))


# -- serialisation -------------------------------------------------------------------------
def test_table_bytes_roundtrip() -> None:
    tb = table()
    data = tb.to_bytes()
    back = BabyStepTable.from_bytes(data)
    assert back.bound == tb.bound
    assert np.array_equal(back.keys, tb.keys) and np.array_equal(back.vals, tb.vals)
    assert back.to_bytes() == data
    assert DiscreteLog(back, MAX_ABS).decode(base_mul(-12345)) == -12345


_HEADER_LEN = struct.calcsize(">8sQQ32s")


@pytest.mark.parametrize(
    "offset", [0, 7, 8, 15, 16, 23, 24, 55, _HEADER_LEN, _HEADER_LEN + 5, -4, -1]
)
def test_flipped_byte_is_rejected(offset: int) -> None:
    data = bytearray(table().to_bytes())
    data[offset] ^= 0x01
    with pytest.raises(DecodeError):
        BabyStepTable.from_bytes(bytes(data))


def test_truncated_extended_and_foreign_bytes_are_rejected() -> None:
    data = table().to_bytes()
    for bad in (
        b"",
        data[:10],
        data[: _HEADER_LEN - 1],
        data[:_HEADER_LEN],
        data[:-1],
        data[:-12],
        data + b"\x00",
        b"TSRDLOG2" + data[8:],
        b"\x00" * 8 + data[8:],
        bytes(len(data)),
    ):
        with pytest.raises(DecodeError):
            BabyStepTable.from_bytes(bad)


def test_unsorted_keys_with_valid_checksum_are_rejected() -> None:
    tb = table()
    keys = tb.keys.copy()
    keys[[0, 1]] = keys[[1, 0]]
    forged = BabyStepTable(tb.bound, keys, tb.vals).to_bytes()  # checksum recomputed
    with pytest.raises(DecodeError):
        BabyStepTable.from_bytes(forged)


def test_empty_table_with_valid_checksum_is_rejected() -> None:
    empty = BabyStepTable(0, np.zeros(0, np.uint64), np.zeros(0, np.uint32)).to_bytes()
    with pytest.raises(DecodeError):
        BabyStepTable.from_bytes(empty)


def test_wrong_entries_with_valid_checksum_cannot_give_a_wrong_answer() -> None:
    """Every table match is confirmed by a multiplication, so a lying table only costs a miss."""
    tb = table()
    vals = tb.vals.copy()
    vals[:] = np.roll(vals, 1)  # every key now maps to another j
    liar = BabyStepTable.from_bytes(BabyStepTable(tb.bound, tb.keys, vals).to_bytes())
    s = DiscreteLog(liar, MAX_ABS)
    for m in (5, -5, STEP + 3):
        try:
            got = s.decode(base_mul(m))
        except DlogError:
            continue
        assert got == m


# -- on-disk cache ---------------------------------------------------------------------------
CACHE_BOUND = 1 << 8


def _tmp_files(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_cache_dir_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESSERA_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert dlog_cache.cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("TESSERA_CACHE_DIR")
    assert dlog_cache.cache_dir() == tmp_path / "xdg" / "tessera"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert dlog_cache.cache_dir() == Path.home() / ".cache" / "tessera"
    assert dlog_cache.table_path(7, tmp_path).parent == tmp_path
    assert dlog_cache.table_path(7, tmp_path) != dlog_cache.table_path(8, tmp_path)


def test_cache_builds_writes_and_reloads(tmp_path: Path) -> None:
    directory = tmp_path / "nested" / "cache"
    tb = dlog_cache.load_table(CACHE_BOUND, directory)
    path = dlog_cache.table_path(CACHE_BOUND, directory)
    assert path.is_file() and _tmp_files(directory) == []
    assert BabyStepTable.from_bytes(path.read_bytes()).to_bytes() == tb.to_bytes()
    assert dlog_cache.load_table(CACHE_BOUND, directory) is tb  # memoised
    s = dlog_cache.discrete_log(1000, CACHE_BOUND, directory)
    assert s.decode(base_mul(-999)) == -999


def test_cache_uses_environment_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESSERA_CACHE_DIR", str(tmp_path))
    dlog_cache.load_table(CACHE_BOUND + 1)
    assert (tmp_path / f"dlog-secp256k1-{CACHE_BOUND + 1}.bin").is_file()


def _fresh_load(path: Path, bound: int) -> BabyStepTable:
    """Load through the cache, bypassing the in-process memo so the file is really read."""
    dlog_cache._loaded.pop((path, bound), None)
    return dlog_cache.load_table(bound, path.parent)


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "garbage", "other-bound"])
def test_cache_rebuilds_damaged_file(tmp_path: Path, damage: str) -> None:
    path = dlog_cache.table_path(CACHE_BOUND, tmp_path)
    good = BabyStepTable.build(CACHE_BOUND).to_bytes()
    if damage == "flip":
        raw = bytearray(good)
        raw[len(raw) // 2] ^= 0x80
        path.write_bytes(bytes(raw))
    elif damage == "truncate":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(os.urandom(len(good)))
    else:  # a valid table for another bound under this bound's name
        path.write_bytes(BabyStepTable.build(CACHE_BOUND // 2).to_bytes())
    tb = _fresh_load(path, CACHE_BOUND)
    assert tb.bound == CACHE_BOUND
    assert path.read_bytes() == good  # rewritten with the rebuilt table
    assert BabyStepTable.from_bytes(path.read_bytes()).bound == CACHE_BOUND
    assert _tmp_files(tmp_path) == []
    assert DiscreteLog(tb, 100).decode(base_mul(-77)) == -77


def test_cache_trusts_a_good_file_without_rebuilding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = dlog_cache.table_path(CACHE_BOUND, tmp_path)
    path.write_bytes(BabyStepTable.build(CACHE_BOUND).to_bytes())

    def no_build(bound: int = 0) -> BabyStepTable:
        raise AssertionError("rebuilt a valid cached table")

    monkeypatch.setattr(BabyStepTable, "build", staticmethod(no_build))
    assert _fresh_load(path, CACHE_BOUND).bound == CACHE_BOUND


def test_failed_write_leaves_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "table.bin"
    path.write_bytes(b"old contents")

    def boom(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(dlog_cache.os, "replace", boom)
    with pytest.raises(OSError):
        dlog_cache._atomic_write(path, b"new contents")
    assert path.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.bin"]


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "table.bin"
    dlog_cache._atomic_write(path, b"one")
    dlog_cache._atomic_write(path, b"two")
    assert path.read_bytes() == b"two"
    assert sorted(p.name for p in path.parent.iterdir()) == ["table.bin"]
