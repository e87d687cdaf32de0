"""scmdm.data: the canvas data.max_length=auto chooses, by hand."""

from __future__ import annotations

import pytest

from scmdm.data import auto_length


def test_auto_length_is_the_nearest_rank_percentile() -> None:
    assert auto_length([3, 9, 4, 7], 100) == 9
    assert auto_length([3, 9, 4, 7], 75) == 7  # the 3rd of 4
    assert auto_length([3, 9, 4, 7], 50) == 4
    assert auto_length([3, 9, 4, 7], 1) == 3
    assert auto_length([1], 100) == 2  # never below 2
    with pytest.raises(ValueError, match="at least one training item"):
        auto_length([], 100)
