"""Dict and List: shared between processes, as Manager().dict() / .list()."""
import multiprocessing
import pickle

import pytest

import shmprim


def test_dict_mapping_protocol():
    d = shmprim.Dict({"a": 1}, b=2)
    d["c"] = [3]
    d[b"k"] = b"raw"
    d[5] = "five"
    d[(1, "x")] = None
    assert len(d) == 6
    assert d["a"] == 1 and d["b"] == 2 and d["c"] == [3] and d[b"k"] == b"raw"
    assert d[5.0] == "five"  # equal keys: 5.0 == 5
    assert (1, "x") in d and "zz" not in d
    with pytest.raises(KeyError):
        d["zz"]
    assert d.get("zz") is None and d.get("zz", 7) == 7
    assert d.pop("b") == 2 and d.pop("b", "gone") == "gone"
    with pytest.raises(KeyError):
        d.pop("b")
    assert d.setdefault("n", 0) == 0 and d.setdefault("n", 9) == 0
    del d["n"]
    assert sorted(map(repr, d.keys())) == sorted(map(repr, ["a", "c", b"k", 5, (1, "x")]))
    assert d.copy() == {"a": 1, "c": [3], b"k": b"raw", 5: "five", (1, "x"): None}
    assert dict(d.items()) == d.copy() and set(d) == set(d.copy())
    d.update([("x", 1)])
    d.clear()
    assert len(d) == 0


def test_list_sequence_protocol():
    lst = shmprim.List([1, "two"])
    lst.append(3.0)
    lst.extend([b"4", (5,)])
    assert len(lst) == 5
    assert lst[0] == 1 and lst[-1] == (5,) and lst[1:3] == ["two", 3.0]
    lst[1] = 2
    assert list(lst) == [1, 2, 3.0, b"4", (5,)]
    assert lst.pop() == (5,) and lst.pop(0) == 1
    lst.insert(0, "first")
    del lst[1]
    assert lst.copy() == ["first", 3.0, b"4"]
    with pytest.raises(IndexError):
        lst[10]
    lst.clear()
    with pytest.raises(IndexError):
        lst.pop()


def fill(d, lst, k):
    for i in range(50):
        d[f"{k}-{i}"] = i
        lst.append((k, i))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_shared_with_children(method):
    d, lst = shmprim.Dict(), shmprim.List()
    ctx = multiprocessing.get_context(method)
    ps = [ctx.Process(target=fill, args=(d, lst, k)) for k in range(2)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(60)
        assert p.exitcode == 0
    assert len(d) == 100 and len(lst) == 100  # grew past their first size
    assert d["1-49"] == 49
    assert sorted(lst) == sorted((k, i) for k in range(2) for i in range(50))
    again = pickle.loads(pickle.dumps(d))
    assert again["0-0"] == 0
