# SPDX-License-Identifier: Apache-2.0
"""The digits' zero-shot rules on drawn images."""

import numpy as np
import pytest

from lcengine.apps.digits.rules import DIGIT_RULES, has_loop, left_heavy, top_heavy


def test_digit_rules_on_drawn_images():
    img = np.zeros((4, 28, 28), np.float32)
    img[0, 4:10, 10:18] = 1.0  # ink at the top
    img[1, 20:26, 10:18] = 1.0  # ink at the bottom
    img[2, 8:20, 8:20] = 1.0  # a ring: closed loop
    img[2, 11:17, 11:17] = 0.0
    img[3, 5:23, 13:15] = 1.0  # a bar: no loop, centered
    assert top_heavy(img).tolist() == [True, False, False, False]
    assert has_loop(img).tolist() == [False, False, True, False]
    img2 = np.zeros((2, 28, 28), np.float32)
    img2[0, 10:18, 2:8] = 1.0
    img2[1, 10:18, 20:26] = 1.0
    assert left_heavy(img2).tolist() == [True, False]
    assert set(DIGIT_RULES) == {"top_heavy", "left_heavy", "has_loop"}
    with pytest.raises(ValueError, match=r"\[N, 28, 28\]"):
        top_heavy(np.zeros((2, 5)))
