"""Samplers and buffer selection (spec §6.2, §6.3): contiguity, no replacement, bounds, stride."""

from __future__ import annotations

import numpy as np
import pytest

from ray_macaw.data.samplers import contiguous_batch, select_rows, uniform_batch
from ray_macaw.errors import UnknownNameError


def test_whole_buffer_with_stride_drops_first_n_mod_stride_rows() -> None:
    # Standard MACAW: size -1, stride 7. N = 23: 23 // 7 = 3 rows kept from the last n = 21 rows,
    # [2, 23) at stride 7 -> 2, 9, 16.
    np.testing.assert_array_equal(select_rows(23, stride=7), [2, 9, 16])
    np.testing.assert_array_equal(select_rows(10), np.arange(10))


def test_start_middle_end_slices() -> None:
    n_rows = 1000
    np.testing.assert_array_equal(
        select_rows(n_rows, size=100, position="start"), np.arange(0, 100)
    )
    np.testing.assert_array_equal(
        select_rows(n_rows, size=100, position="end"), np.arange(900, 1000)
    )
    # true middle: centred on N // 2 = 500 -> [450, 550)
    np.testing.assert_array_equal(
        select_rows(n_rows, size=100, position="middle"), np.arange(450, 550)
    )
    # the authors' quirk: centred on (N // 2) // 2 = 250 -> [200, 300)
    np.testing.assert_array_equal(
        select_rows(n_rows, size=100, position="middle", middle_centre="quarter"),
        np.arange(200, 300),
    )


def test_slice_with_stride_and_size_larger_than_buffer() -> None:
    # size 30, stride 7: 30 // 7 = 4 rows, from a chunk of 28: end -> [72, 100) every 7th
    np.testing.assert_array_equal(
        select_rows(100, size=30, stride=7, position="end"), [72, 79, 86, 93]
    )
    # asking for more than exists keeps everything
    np.testing.assert_array_equal(select_rows(50, size=10_000, position="start"), np.arange(50))


def test_quarter_centre_that_does_not_fit_is_refused() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        select_rows(100, size=80, position="middle", middle_centre="quarter")


def test_bad_selection_arguments() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'middle'"):
        select_rows(100, size=10, position="midle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stride"):
        select_rows(100, stride=0)
    with pytest.raises(ValueError, match="size"):
        select_rows(100, size=0)


def test_contiguous_batch_is_consecutive_within_the_buffer() -> None:
    rows = select_rows(10_000, stride=7)
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(200):
        batch = contiguous_batch(rows, 256, rng)
        assert len(batch) == 256
        first = int(np.searchsorted(rows, batch[0]))
        np.testing.assert_array_equal(batch, rows[first : first + 256])  # consecutive in buffer
        starts.add(first)
    assert min(starts) >= 0 and max(starts) <= len(rows) - 256
    assert len(starts) > 100  # offsets vary
    # the full buffer is reachable exactly
    np.testing.assert_array_equal(contiguous_batch(rows, len(rows), rng), rows)


def test_uniform_batch_is_without_replacement_and_covers_the_buffer() -> None:
    rows = np.arange(100, 400, dtype=np.int64)
    rng = np.random.default_rng(1)
    seen = np.zeros(400, dtype=int)
    for _ in range(300):
        batch = uniform_batch(rows, 256, rng)
        assert len(np.unique(batch)) == 256
        assert np.isin(batch, rows).all()
        seen[batch] += 1
    assert (seen[100:400] > 0).all()
    # every row is drawn with probability 256 / 300
    assert abs(seen[100:400].mean() / 300 - 256 / 300) < 1e-9
    np.testing.assert_array_equal(np.sort(uniform_batch(rows, 300, rng)), rows)


def test_batch_larger_than_buffer_is_refused() -> None:
    with pytest.raises(ValueError, match="smaller batch"):
        uniform_batch(np.arange(10), 11, np.random.default_rng(0))
    with pytest.raises(ValueError, match="smaller batch"):
        contiguous_batch(np.arange(10), 11, np.random.default_rng(0))
