"""Plain data out of pickles and .npz files without unpickling (scmdm.plaindata). The pickles are written here with
``pickle.dumps`` (writing is harmless); reading never goes through pickle."""

from __future__ import annotations

import collections
import datetime
import os
import pickle

import numpy as np
import pytest

from scmdm.plaindata import read_npz, read_plain_pickle

PLAIN = {"FCD": {"mu": np.arange(3.0), "sigma": np.eye(2, dtype=">f4")},
         "ints": np.arange(6, dtype=np.int16).reshape(2, 3, order="F"), "scalar": np.float64(2.5), "n": 7,
         "big": 2**70, "x": -1.5, "s": "é", "b": b"\x00\x01", "none": None, "flags": [True, False],
         "pair": (1, "a"), "set": {1, 2}, "frozen": frozenset({3}),
         "counts": collections.Counter({"CCO": 2}), "ordered": collections.OrderedDict(a=1)}


def _same(a, b) -> None:
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for key in a:
            _same(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    else:
        assert a == b and type(a) is type(b) or (isinstance(a, np.generic) and a == b)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_plain_values_and_numpy_arrays_read_back(protocol) -> None:
    value = read_plain_pickle(pickle.dumps(PLAIN, protocol=protocol))
    expected = {**PLAIN, "counts": {"CCO": 2}, "ordered": {"a": 1}}  # Counter and OrderedDict read as dicts
    _same(expected, value)
    assert value["ints"].flags.f_contiguous == (protocol < 5) or value["ints"].flags.c_contiguous


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_anything_else_is_refused_without_running_it(tmp_path) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(ValueError, match=r"refers to (posix|os)\.system, which is not plain data"):
        read_plain_pickle(pickle.dumps({"x": _Exploit(str(marker))}))
    assert not marker.exists()
    with pytest.raises(ValueError, match=r"refers to datetime.date, which is not plain data"):
        read_plain_pickle(pickle.dumps(datetime.date(2020, 1, 1)))
    with pytest.raises(ValueError, match="exhausted before seeing STOP|no STOP instruction"):
        read_plain_pickle(pickle.dumps([1, 2, 3])[:-1])


def test_npz_with_plain_arrays_and_with_a_pickled_dict(tmp_path) -> None:
    plain = tmp_path / "plain.npz"
    np.savez(plain, mu=np.arange(4.0), sigma=np.eye(4))
    members = read_npz(plain)
    assert sorted(members) == ["mu", "sigma"] and np.array_equal(members["sigma"], np.eye(4))
    moses = tmp_path / "stats.npz"  # the layout of MOSES's test_stats.npz: one member, a 0-d object array
    np.savez(moses, stats={"FCD": {"mu": np.arange(4.0), "sigma": np.eye(4)}, "Frag": {"frag": collections.Counter()}})
    stats = read_npz(moses)["stats"]
    assert stats.shape == () and stats.dtype == object
    assert np.array_equal(stats.item()["FCD"]["mu"], np.arange(4.0))
    (tmp_path / "x.npz").write_text("not a zip")
    with pytest.raises(ValueError, match=r"x.npz is not an .npz file"):
        read_npz(tmp_path / "x.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, stats=np.array([_Exploit(str(tmp_path / "pwned"))], dtype=object))
    with pytest.raises(ValueError, match=r"bad.npz: member 'stats' cannot be read as plain data"):
        read_npz(bad)
    assert not (tmp_path / "pwned").exists()
