"""PeakMemory: the peak bytes of tensors created inside it, storages counted once."""

import torch

from pyrovae.infer.memory import PeakMemory


def test_peak_counts_live_storages_once():
    before = torch.ones(10_000)  # made outside: never counted
    with PeakMemory() as memory:
        x = torch.ones(1000)  # 4,000 bytes
        y = x * 2  # 8,000 live
        total = y.sum()  # 8,004: the peak
        del y  # 4,004
        view = x.view(10, 100)  # a view of x: no new storage
        copy = before.clone()  # 40,000 bytes: 44,004 live, the new peak
        del copy
    assert memory.peak == 44_004
    assert memory.live == 4004
    del x, total
    assert memory.live == 4000  # the view keeps x's storage
    del view
    assert memory.live == 0


def test_peak_of_a_loop_that_frees_as_it_goes_is_one_step():
    with torch.no_grad(), PeakMemory() as memory:
        acc = torch.zeros(250)  # 1,000 bytes
        for _ in range(100):
            acc = acc + torch.ones(250)  # ones and the sum live together with the old acc: 3,000 bytes
    assert memory.peak == 3000
