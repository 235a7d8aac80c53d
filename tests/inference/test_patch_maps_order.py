"""Each loader worker reads one contiguous stretch of patches, and the results do not depend on
the number of workers."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from mixsup.inference.patch_maps import make_loader, map_slides, worker_batches
from mixsup.inference.settings import InferSettings
from mixsup.slides.patches import SlideSource


class _WhoReads(Dataset):
    def __len__(self) -> int:
        return 1000

    def __getitem__(self, i: int) -> tuple[int, int]:
        return i, get_worker_info().id


def test_the_dataloader_hands_each_worker_its_own_stretch():
    batches = worker_batches([300, 0, 450, 250], 16, 2)
    loader = make_loader(_WhoReads(), batches, 2, torch.device("cpu"))
    seen: dict[int, list[int]] = {0: [], 1: []}
    for idx, worker in loader:
        assert len(set(worker.tolist())) == 1
        seen[int(worker[0])] += idx.tolist()
    for got in seen.values():
        assert got == list(range(got[0], got[0] + len(got)))
    assert sorted(seen[0] + seen[1]) == list(range(1000))


def test_results_are_the_same_with_0_and_2_workers(shapes_data):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 1, 3, padding=1))
    paths = sorted((shapes_data / "slides").glob("*.tiff"))[:3]
    sources = [SlideSource(p.stem, str(p)) for p in paths]
    grid = np.array([(x, y) for y in range(0, 640, 96) for x in range(0, 640, 96)])
    jobs = [(0, grid[:17]), (1, grid[:0]), (2, grid)]

    def run(workers: int) -> dict:
        settings = InferSettings(torch.device("cpu"), batch_size=8, num_workers=workers,
                                 amp=False, channels_last=True, map_downsample=8)
        out = map_slides(model, sources, jobs, 128, 1.0, settings)
        return dict(out)

    a, b = run(0), run(2)
    assert sorted(a) == sorted(b) == [0, 1, 2]
    for k in a:
        np.testing.assert_array_equal(a[k].maps, b[k].maps)
        np.testing.assert_array_equal(a[k].max_prob, b[k].max_prob)
    assert len(a[2].max_prob) == len(grid)


def test_stopping_part_way_aborts_the_slides_begun(shapes_data):
    from mixsup.inference.patch_maps import _MemorySink

    aborted: list[int] = []

    class Sink(_MemorySink):
        def __init__(self, slide: int, n: int, m: int) -> None:
            super().__init__(n, m)
            self.slide = slide

        def abort(self) -> None:
            aborted.append(self.slide)

    model = torch.nn.Conv2d(3, 1, 1)
    path = sorted((shapes_data / "slides").glob("*.tiff"))[0]
    grid = np.array([(x, y) for y in range(0, 640, 96) for x in range(0, 640, 96)])
    # two workers, one slide each: while one slide finishes, the other is half written
    settings = InferSettings(torch.device("cpu"), batch_size=8, num_workers=2, amp=False,
                             channels_last=True, map_downsample=8)
    out = map_slides(model, [SlideSource("a", str(path))] * 2, [(0, grid), (1, grid)],
                     128, 1.0, settings, open_sink=Sink)
    first, _ = next(out)
    assert not aborted
    out.close()
    assert aborted == [1 - first]
