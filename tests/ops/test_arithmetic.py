"""Conv arithmetic: the lectures' formulas and their worked numbers."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnjax.ops import arithmetic as A


def test_output_size_lecture_formula():
    # seed 000: floor((H_in - M + 2P) / S) + 1
    assert A.output_size(5, 3) == 3
    assert A.output_size(5, 3, stride=2, padding=1) == 3  # seed 001 zero-padded stride-2 example
    assert A.output_size(28, 5) == 24
    assert A.output_size(32, 5, stride=1, padding=2) == 32
    assert A.output_size(7, 3, stride=2) == 3
    assert A.output_size(7, 3, padding="SAME") == 7
    assert A.output_size(7, 3, stride=2, padding="SAME") == 4
    assert A.output_size(7, 3, padding="FULL") == 9
    assert A.output_size(7, 3, padding=(0, 1)) == 6
    assert A.output_size(9, 3, dilation=4) == 1


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 30), m=st.integers(1, 7), s=st.integers(1, 4), p=st.integers(0, 3), d=st.integers(1, 3)
)
def test_output_size_counts_windows(h, m, s, p, d):
    """Brute force: count the window positions that fit in the padded input."""
    eff = d * (m - 1) + 1
    positions = [start for start in range(0, h + 2 * p, s) if start + eff <= h + 2 * p]
    if not positions:
        with pytest.raises(ValueError, match="larger than the padded input"):
            A.output_size(h, m, s, p, d)
    else:
        assert A.output_size(h, m, s, p, d) == len(positions)
        if d == 1:
            assert A.output_size(h, m, s, p, d) == math.floor((h - m + 2 * p) / s) + 1


def test_output_size_errors():
    with pytest.raises(ValueError, match="stride"):
        A.output_size(5, 3, stride=0)
    with pytest.raises(ValueError, match="padding"):
        A.output_size(5, 3, padding=-1)
    with pytest.raises(ValueError, match="unknown"):
        A.output_size(5, 3, padding="HALF")
    with pytest.raises(TypeError, match="kernel_size"):
        A.output_size(5, 2.5)
    with pytest.raises(ValueError, match="larger"):
        A.output_size(2, 3)


def test_conv_transpose_output_size():
    assert A.conv_transpose_output_size(3, 3, stride=2) == 7
    assert A.conv_transpose_output_size(3, 3, stride=2, padding=1, output_padding=1) == 6
    # inverts output_size for the sizes conv maps to the same output
    for h in range(5, 12):
        o = A.output_size(h, 3, stride=2, padding=1)
        op = h - A.conv_transpose_output_size(o, 3, stride=2, padding=1)
        assert 0 <= op < 2
        assert A.conv_transpose_output_size(o, 3, stride=2, padding=1, output_padding=op) == h


def test_parameter_counts_seed_004():
    n, m, k = 100, 20, 3
    assert A.dense_params(n, m) == (n + 1) * m
    assert A.k_local_params(k, m) == (k + 1) * m
    assert A.k_local_params(k, m, ndim=2) == (k**2 + 1) * m**2
    M, K, p, q = 3, 16, 5, 4
    assert A.conv_params(M, K, (p, q)) == (M * p * q + 1) * K
    assert A.conv_params(M, K, 3, use_bias=False) == M * 9 * K
    # grouped conv divides the weights by g
    assert A.conv_params(16, 32, 3, groups=4) == (16 * 9 // 4 + 1) * 32
    assert A.depthwise_params(8, 3) == (9 + 1) * 8
    assert A.depthwise_params(8, 3, multiplier=2) == (9 + 1) * 16
    assert A.separable_params(8, 16, 3) == 9 * 8 + (8 + 1) * 16
    # locally connected with one map is the k-local layer
    assert A.locally_connected_params(1, 1, k, m, ndim=1) == A.k_local_params(k, m)
    assert A.locally_connected_params(1, 1, (k,), m) == A.k_local_params(k, m)
    assert A.locally_connected_params(1, 1, k, m) == A.k_local_params(k, m, ndim=2)
    assert A.locally_connected_params(1, 1, (k, k), (m, m)) == A.k_local_params(k, m, ndim=2)
    assert A.conv_params(M, K, 3, ndim=1) == (M * 3 + 1) * K
    assert A.conv_params(M, K, 3, ndim=3) == (M * 27 + 1) * K
    assert A.locally_connected_params(3, 4, (2, 2), (5, 6)) == 30 * (3 * 4 + 1) * 4
    with pytest.raises(ValueError, match="groups=3 must divide"):
        A.conv_params(16, 32, 3, groups=3)
    with pytest.raises(ValueError, match="different lengths"):
        A.locally_connected_params(1, 1, (3, 3), (4, 4, 4))


def test_lenet_and_resnet_param_counts():
    # LeNet-5 C1: 6 filters 5x5 on 1 map -> 156 parameters (LeCun 1998)
    assert A.conv_params(1, 6, 5) == 156
    # F6: 120 -> 84 -> 10164
    assert A.dense_params(120, 84) == 10164
    # ResNet-18 first conv: 7x7x3x64 without bias
    assert A.conv_params(3, 64, 7, use_bias=False) == 9408


def test_flops():
    # one output of a 3x3x2 conv: 18 multiply-adds (36 FLOPs) + 1 bias
    assert A.conv_flops(2, 1, 3, 1) == 37  # 3x3 kernel, 1x1 output
    assert A.conv_flops(2, 1, (3, 3), (1, 1)) == 37
    assert A.conv_flops(4, 8, 3, (5, 5), groups=2, use_bias=False, batch=2) == 2 * 25 * 8 * 2 * 2 * 9
    assert A.dense_flops(10, 3) == 3 * 21
    # separable: depthwise 3x3 on 4 maps then 1x1 to 8 maps, 5x5 output
    assert A.separable_flops(4, 8, 3, 5) == 25 * 4 * 2 * 9 + 25 * 8 * (2 * 4 + 1)
    assert A.separable_flops(4, 8, (3, 3), (5, 5), multiplier=2) == 25 * 8 * 2 * 9 + 25 * 8 * (2 * 8 + 1)
    assert A.locally_connected_flops(4, 8, 3, 5) == A.conv_flops(4, 8, 3, 5)
    with pytest.raises(ValueError, match="groups"):
        A.conv_flops(4, 6, 3, 5, groups=4)


def test_receptive_field_lectures():
    # seed 004: after two 3x3 convs the receptive field is 5x5
    assert [r.size for r in A.receptive_field([(3, 1), (3, 1)])] == [3, 5]
    # seed 001: 3x3 convs dilated 1, 2, 4 have effective kernels 3, 5, 9 ...
    assert [A.effective_kernel_size(3, d) for d in (1, 2, 4)] == [3, 5, 9]
    assert [A.receptive_field([(3, 1, d)])[0].size for d in (1, 2, 4)] == [3, 5, 9]
    # ... and stacked they grow exponentially: 3, 7, 15
    assert [r.size for r in A.receptive_field([(3, 1, 1), (3, 1, 2), (3, 1, 4)])] == [3, 7, 15]
    # a strided layer enlarges what the next layer sees
    rf = A.receptive_field([(3, 2), (3, 1)])
    assert rf == [A.ReceptiveField(3, 2), A.ReceptiveField(7, 2)]
    # accepted spellings: int, dict
    assert A.receptive_field([3, {"window": 2, "stride": 2}, {"kernel": 3}]) == [(3, 1), (4, 2), (8, 2)]
    with pytest.raises(ValueError, match="layers\\[0\\]"):
        A.receptive_field([(3, 1, 1, 1)])
    with pytest.raises(ValueError, match="stride"):
        A.receptive_field([(3, 0)])
    with pytest.raises(TypeError):
        A.receptive_field("3x3")


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 3)), min_size=1, max_size=4))
def test_receptive_field_by_impulse(layers):
    """Brute force: the input cells a centre output cell depends on, by composing index ranges."""
    # output cell 0 of the last layer depends on input cells [lo, hi] of layer 0
    lo, hi = 0, 0
    for k, s, d in reversed(layers):
        lo, hi = lo * s, hi * s + d * (k - 1)
    assert A.receptive_field(layers)[-1].size == hi - lo + 1
    assert A.receptive_field(layers)[-1].jump == int(np.prod([s for _, s, _ in layers]))
