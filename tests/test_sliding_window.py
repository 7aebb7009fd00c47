"""Window geometry of docs/method.md §5 for images smaller than, equal to and larger than the crop."""
import pytest
import torch

from proxyclip.method.sliding_window import WindowGeometry, averaged_window_logits, num_grids, pad_to_multiple, \
    sliding_windows, window_batches


def method_windows(H, W, crop, stride):
    h_grids = max(H - crop + stride - 1, 0) // stride + 1
    w_grids = max(W - crop + stride - 1, 0) // stride + 1
    out = []
    for i in range(h_grids):
        for j in range(w_grids):
            y1, x1 = i * stride, j * stride
            y2, x2 = min(y1 + crop, H), min(x1 + crop, W)
            out.append((max(y2 - crop, 0), y2, max(x2 - crop, 0), x2))
    return out


@pytest.mark.parametrize("H, W", [(100, 200), (336, 336), (337, 500), (375, 500), (336, 1000), (1024, 2048), (50, 50)])
@pytest.mark.parametrize("crop, stride", [(336, 112), (224, 112), (100, 30)])
def test_windows_and_counts(H, W, crop, stride):
    windows = sliding_windows(H, W, crop, stride)
    assert [tuple(w) for w in windows] == method_windows(H, W, crop, stride)
    assert len(windows) == num_grids(H, crop, stride) * num_grids(W, crop, stride)
    counts = torch.zeros(H, W, dtype=torch.int64)            # every pixel is covered: the divisor is never 0
    for y1, y2, x1, x2 in windows:
        counts[y1:y2, x1:x2] += 1
    assert counts.min() >= 1
    if H <= crop and W <= crop:
        assert windows == [(0, H, 0, W)]


def test_pad_to_multiple():
    assert pad_to_multiple(336, 336, 56) == (0, 0, 0, 0)
    assert pad_to_multiple(300, 250, 56) == (15, 15, 18, 18)   # left/top get half, rounded down
    assert pad_to_multiple(57, 1, 56) == (27, 28, 27, 28)


def test_windows_of_hand_computed_cases():
    # 375 x 500 (a VOC image), crop 336, stride 112: rows (375-336+111)//112+1 = 2, cols (500-336+111)//112+1 = 3;
    # the last row/column is pushed back inside the image
    assert sliding_windows(375, 500, 336, 112) == [(0, 336, 0, 336), (0, 336, 112, 448), (0, 336, 164, 500),
                                                   (39, 375, 0, 336), (39, 375, 112, 448), (39, 375, 164, 500)]
    assert sliding_windows(448, 896, 224, 112)[-1] == (224, 448, 672, 896)   # Cityscapes: 3 x 7 = 21 windows
    assert len(sliding_windows(448, 896, 224, 112)) == 21


def test_window_batches_group_shapes_and_keep_each_images_order():
    """The one window iterator: windows of one padded shape run together (in order of first appearance), chunked;
    each window knows its image, place and padding, and its crop is the padded cut."""
    geometry = WindowGeometry("slide", 64, 32, 28)
    images = [torch.randn(3, 100, 130), torch.randn(3, 50, 40), torch.randn(3, 64, 96)]
    batches = list(window_batches(images, geometry, batch_size=4))
    seen = [(index, window) for batch in batches for index, window in zip(batch.images, batch.windows)]
    for index, x in enumerate(images):
        assert [w for i, w in seen if i == index] == sliding_windows(*x.shape[-2:], 64, 32)
    assert all(len(batch.images) <= 4 for batch in batches)
    for batch in batches:
        for index, (y1, y2, x1, x2), pad, crop in zip(batch.images, batch.windows, batch.pads, batch.crops):
            assert pad == pad_to_multiple(y2 - y1, x2 - x1, 28)
            assert torch.equal(crop, torch.nn.functional.pad(images[index][:, y1:y2, x1:x2], pad))
    assert [len(b.images) for b in window_batches(images, geometry)] == [14, 1]   # None: a shape at once, images mixed
    assert len(list(window_batches(images, WindowGeometry("whole", 64, 32, 1)))) == 3


def test_averaged_window_logits_sum_and_count():
    """Each window's logits cropped out of its padding, summed per pixel and divided by the window count."""
    geometry = WindowGeometry("slide", 64, 32, 28)
    images = [torch.randn(3, 100, 130), torch.randn(3, 50, 40)]

    def logits_of(batch):                        # the crop itself, twice: [n, 2, Hp, Wp]
        return torch.cat([batch.crops[:, :1], batch.crops[:, :1] * 2], dim=1).double()

    for widen, dtype in ((False, torch.float32), (True, torch.float64)):
        for x, canvas in zip(images, averaged_window_logits(images, geometry, logits_of, 3, widen)):
            assert canvas.dtype == dtype
            torch.testing.assert_close(canvas.float(), torch.cat([x[:1], 2 * x[:1]]), rtol=0, atol=1e-6)
