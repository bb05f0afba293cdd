"""Readers and writers: round trips, k-core, and one clear error per kind of bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rsir import logs
from rsir.cli import main
from rsir.data import MAX_LINE_BYTES, read_sequences, write_sequences
from rsir.errors import DataError
from rsir.logs import read_interactions, write_interactions


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_read_sequences_keeps_ids_and_order(tmp_path):
    path = _write(tmp_path, "d.txt", "1 3 1 2\n7 2 2 5 4\n\n")
    parsed = read_sequences(path)
    assert parsed.users.tolist() == [1, 7]
    assert [s.tolist() for s in parsed.sequences] == [[3, 1, 2], [2, 2, 5, 4]]
    assert parsed.num_items == 5


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("1 2 3 4\n2 5 x 7\n", 2, "'x' is not an integer"),
        ("1 2 3 4\n2 5 99999999999999999999 7\n", 2, "'99999999999999999999' is not an integer id below 2**63"),
        ("1 2 3 4\n2 9\n", 2, "has 1 item"),
        ("1 2 3 4\n1 5 6 7\n", 2, "already appeared on line 1"),
        ("1 2 3 0\n", 1, "not positive"),
        ("1 2 3 4\n2 3 4 99\n", 2, "beyond the catalogue of 50"),
    ],
)
def test_bad_sequence_lines_name_file_and_line(tmp_path, text, line, fragment):
    path = _write(tmp_path, "bad.txt", text)
    with pytest.raises(DataError) as err:
        read_sequences(path, num_items=50)
    assert str(path) in str(err.value)
    assert f"line {line}" in str(err.value)
    assert fragment in str(err.value)


def test_empty_file_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no sequences"):
        read_sequences(_write(tmp_path, "empty.txt", ""))


def test_ten_megabyte_line_is_refused_without_reading_it_all(tmp_path):
    path = tmp_path / "huge.txt"
    with path.open("w") as f:
        f.write("1 2 3 4\n2 ")
        f.write("7 " * (5 * 1024 * 1024))
        f.write("\n")
    with pytest.raises(DataError, match=f"line 2.*longer than {MAX_LINE_BYTES}"):
        read_sequences(path)


def test_binary_file_is_an_error(tmp_path):
    path = tmp_path / "bin.txt"
    path.write_bytes(b"\x00\xff\xfe\x89PNG\r\n")
    with pytest.raises(DataError, match="line 1"):
        read_sequences(path)


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    path = _write(tmp_path, "bad.txt", "1 2 3 4\n2 5 x 7\n")
    code = main(["data", "stats", "--data", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "line 2" in err and "Traceback" not in err


def test_interaction_log_is_sorted_by_time_and_remapped(tmp_path):
    path = _write(tmp_path, "log.csv", "user,item,timestamp\nu2,b,5\nu1,c,3\nu1,a,1\nu1,b,2\nu2,a,1\nu2,c,9\n")
    parsed = read_interactions(path, k_core=0)
    assert parsed.user_labels == ["u1", "u2"]
    assert parsed.item_labels == ["a", "b", "c"]
    assert [s.tolist() for s in parsed.sequences] == [[1, 2, 3], [1, 2, 3]]


def test_k_core_filters_until_stable(tmp_path):
    # item z is seen once; removing it leaves user u3 with 2 items, which then drops too,
    # which in turn drops item y to 2 interactions.
    rows = ["user,item,timestamp"]
    for u in ("u1", "u2"):
        rows += [f"{u},a,1", f"{u},b,2", f"{u},c,3"]
    rows += ["u3,a,1", "u3,y,2", "u3,z,3", "u4,a,1", "u4,b,2", "u4,c,3", "u5,y,1", "u5,a,2", "u5,b,3", "u5,c,4"]
    path = _write(tmp_path, "log.csv", "\n".join(rows) + "\n")
    parsed = read_interactions(path, k_core=3)
    assert parsed.item_labels == ["a", "b", "c"]
    assert parsed.user_labels == ["u1", "u2", "u4", "u5"]


def test_log_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="no 'item' column"):
        read_interactions(_write(tmp_path, "a.csv", "user,thing\n1,2\n"))
    with pytest.raises(DataError, match=r"line 3.*not a number"):
        read_interactions(_write(tmp_path, "b.csv", "user,item,timestamp\n1,2,3\n1,3,soon\n"), k_core=0)
    with pytest.raises(DataError, match="empty"):
        read_interactions(_write(tmp_path, "c.csv", ""))
    with pytest.raises(DataError, match="unknown log format"):
        read_interactions(_write(tmp_path, "d.json", "{}"))


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".inter"])
def test_log_formats_round_trip(tmp_path, suffix):
    users = np.array([1, 2, 3])
    seqs = [np.array([3, 1, 2]), np.array([2, 3, 1, 4]), np.array([4, 1, 2, 3])]
    path = tmp_path / f"log{suffix}"
    write_interactions(path, users, seqs)
    parsed = read_interactions(path, k_core=0)
    assert parsed.user_labels == ["1", "2", "3"]
    # ids are remapped densely in sorted order of their labels: here the identity
    assert [s.tolist() for s in parsed.sequences] == [s.tolist() for s in seqs]


def test_recbole_header_is_understood(tmp_path):
    path = tmp_path / "x.inter"
    pd.DataFrame({"user_id:token": [1, 1, 1], "item_id:token": [9, 8, 7], "timestamp:float": [3, 2, 1]}).to_csv(
        path, sep="\t", index=False)
    parsed = read_interactions(path, k_core=0)
    assert parsed.item_labels == ["7", "8", "9"]
    assert parsed.sequences[0].tolist() == [1, 2, 3]


def test_sequence_file_round_trip(tmp_path):
    users = np.array([5, 9])
    seqs = [np.array([1, 2, 3]), np.array([4, 4, 2, 1])]
    write_sequences(tmp_path / "s.txt", users, seqs)
    parsed = read_sequences(tmp_path / "s.txt")
    assert parsed.users.tolist() == [5, 9]
    assert [s.tolist() for s in parsed.sequences] == [[1, 2, 3], [4, 4, 2, 1]]


def test_catalogue_cap_and_float_ids_in_sequence_files(tmp_path):
    """A line ``1 1 2 1000000000000`` once declared a catalogue of 10^12 items (64 TB of embeddings)."""
    huge = _write(tmp_path, "huge.txt", "1 2 3 4\n2 1 2 1000000000000\n")
    with pytest.raises(DataError, match=r"line 2: item id 1000000000000 is above the limit of 10000000 items "
                                        r"\(the max_items setting\)"):
        read_sequences(huge)
    with pytest.raises(DataError, match="above the limit of 3 items"):
        read_sequences(_write(tmp_path, "four.txt", "1 2 3 4\n"), max_items=3)
    with pytest.raises(DataError, match=r"line 1: '1.9' is not an integer id"):
        read_sequences(_write(tmp_path, "float.txt", "1 1.9 2 3\n"))
    with pytest.raises(DataError, match="above the limit"):
        read_sequences(_write(tmp_path, "declared.txt", "1 2 3 4\n"), num_items=10**12)


def test_catalogue_cap_in_logs(tmp_path):
    path = _write(tmp_path, "log.csv", "user,item\n" + "".join(f"u,{i}\n" for i in range(5)))
    assert read_interactions(path, k_core=0, max_items=5).num_items == 5
    with pytest.raises(DataError, match="5 distinct items are above the limit of 4 items"):
        read_interactions(path, k_core=0, max_items=4)


def test_logs_read_in_chunks_equal_logs_read_whole(tmp_path, monkeypatch):
    """Ids recurring across chunks get one code; equal timestamps keep their file order across chunks;
    k-core counts over the whole file; a missing id names its line in a later chunk."""
    rng = np.random.default_rng(0)
    rows = [f"u{u},i{i},{t}" for u, i, t in zip(rng.integers(0, 30, 600), rng.integers(0, 40, 600),
                                                 rng.integers(0, 20, 600), strict=True)]
    path = _write(tmp_path, "log.csv", "user,item,timestamp\n" + "\n".join(rows) + "\n")
    whole = read_interactions(path, k_core=3)
    monkeypatch.setattr(logs, "CHUNK_ROWS", 7)
    chunked = read_interactions(path, k_core=3)
    assert chunked.user_labels == whole.user_labels and chunked.item_labels == whole.item_labels
    assert chunked.items.tolist() == whole.items.tolist() and chunked.offsets.tolist() == whole.offsets.tolist()
    gap = _write(tmp_path, "gap.csv", "user,item\n" + "u,a\n" * 20 + ",b\n")
    with pytest.raises(DataError, match="line 22: empty user id"):
        read_interactions(gap, k_core=0)


def test_long_log_line_is_found_across_read_blocks(tmp_path):
    """The line-length scan reads 4 MB blocks: a long line that straddles one is still caught, by number."""
    path = tmp_path / "long.csv"
    short = b"user,item\n" + b"u,a\n" * 1_000_000  # 4 MB: the long line starts just before a block ends
    path.write_bytes(short + b"u," + b"b" * (MAX_LINE_BYTES + 10) + b"\nu,c\n")
    with pytest.raises(DataError, match=f"line 1000002.*longer than {MAX_LINE_BYTES}"):
        read_interactions(path)
    path.write_bytes(short + b"u," + b"b" * (MAX_LINE_BYTES - 10) + b"\n")
    assert read_interactions(path).item_labels == ["a"]  # just short enough; its one-off item is k-cored away
