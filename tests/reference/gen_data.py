"""Golden values for tests/data: torchvision transforms on fixed tensors, PIL decodes of small
committed images (written here too), and a few Fashion-MNIST values.

Run: /usr/bin/python3 tests/reference/gen_data.py  (writes tests/golden/data.safetensors and
tests/data/files/*).
"""
import gzip
import os

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as F
from PIL import Image

from golden_common import save, seeded

FILES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "files")
FMNIST = "/usr/share/datasets/fashion-mnist"


def write_images():
    os.makedirs(FILES, exist_ok=True)
    rng = np.random.RandomState(3)
    yy, xx = np.mgrid[0:10, 0:13]
    rgb = np.stack([xx * 19, yy * 25, (xx + yy) * 10], axis=-1).astype(np.uint8)
    rgb = np.clip(rgb.astype(int) + rng.randint(0, 30, rgb.shape), 0, 255).astype(np.uint8)
    Image.fromarray(rgb, "RGB").save(os.path.join(FILES, "rgb.jpg"), quality=90)
    Image.fromarray(rgb, "RGB").save(os.path.join(FILES, "rgb.png"))
    gray = (xx * 17 + yy * 3).astype(np.uint8)
    Image.fromarray(gray, "L").save(os.path.join(FILES, "gray.jpg"), quality=95)
    Image.fromarray(gray, "L").save(os.path.join(FILES, "gray.png"))
    rgba = np.concatenate([rgb, (yy * 20).astype(np.uint8)[..., None]], axis=-1)
    Image.fromarray(rgba, "RGBA").save(os.path.join(FILES, "rgba.png"))
    Image.fromarray(rgb, "RGB").convert("P", palette=Image.ADAPTIVE, colors=16).save(
        os.path.join(FILES, "palette.png"))
    out = {}
    for name in ["rgb.jpg", "rgb.png", "gray.jpg", "gray.png", "rgba.png", "palette.png"]:
        arr = np.array(Image.open(os.path.join(FILES, name)).convert("RGB"))
        out["decode." + name] = torch.from_numpy(arr.copy())
    return out


def transforms():
    seeded(0)
    img = torch.rand(3, 11, 14)
    out = {"img": img}
    out["resize.7"] = F.resize(img, 7, antialias=False)           # shorter edge 7 -> (7, 8)
    out["resize.5x9"] = F.resize(img, [5, 9], antialias=False)
    out["resize.20"] = F.resize(img, 20, antialias=False)         # upsampling -> (20, 25)
    tall = torch.rand(2, 17, 6)
    out["tall"] = tall
    out["resize.tall.4"] = F.resize(tall, 4, antialias=False)     # (11, 4)
    img_u8 = (torch.rand(3, 9, 12) * 255).to(torch.uint8)
    out["img_u8"] = img_u8
    out["resize.u8.5"] = F.resize(img_u8, 5, antialias=False)
    out["cc.6"] = F.center_crop(img, [6, 6])
    out["cc.4x9"] = F.center_crop(img, [4, 9])
    out["cc.8x12"] = F.center_crop(img, [8, 12])   # even gaps with ties in round()
    out["cc.15x16"] = F.center_crop(img, [15, 16]) # zero padding
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    out["norm"] = F.normalize(img, mean, std)
    hwc = (torch.rand(5, 4, 3) * 255).to(torch.uint8)
    out["hwc_u8"] = hwc
    out["to_tensor"] = T.ToTensor()(hwc.numpy())
    # the resnet18 ImageFolder pipeline on a decoded image
    rgb = np.array(Image.open(os.path.join(FILES, "rgb.png")).convert("RGB"))
    out["pipeline"] = T.Compose([T.ToTensor(), T.Resize(8, antialias=False), T.CenterCrop(6),
                                 T.Normalize(mean, std)])(rgb)
    return out


DIST_CASES = [(10, 3, False), (10, 3, True), (2, 5, False), (8, 4, False), (23, 4, True), (7, 7, False)]


def distributed_sampler():
    """torch.utils.data.DistributedSampler, without and with shuffle: every rank's indices."""
    from torch.utils.data import DistributedSampler
    out = {}
    for n, R, drop_last in DIST_CASES:
        for r in range(R):
            s = DistributedSampler(range(n), num_replicas=R, rank=r, shuffle=False, drop_last=drop_last)
            out[f"dist.{n}.{R}.{int(drop_last)}.{r}"] = torch.tensor(list(iter(s)), dtype=torch.int64)
            # With shuffle: torch.randperm(n) from a generator seeded with seed + epoch.
            s = DistributedSampler(range(n), num_replicas=R, rank=r, shuffle=True, seed=7,
                                   drop_last=drop_last)
            s.set_epoch(2)
            out[f"dist_shuffled.{n}.{R}.{int(drop_last)}.{r}"] = torch.tensor(list(iter(s)),
                                                                             dtype=torch.int64)
    return out


def idx(path):
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), dtype=np.uint8).copy()


def fashion_mnist():
    if not os.path.isdir(FMNIST):
        return {}
    train_img = idx(os.path.join(FMNIST, "train-images-idx3-ubyte.gz"))[16:].reshape(-1, 28, 28)
    train_lab = idx(os.path.join(FMNIST, "train-labels-idx1-ubyte.gz"))[8:]
    test_lab = idx(os.path.join(FMNIST, "t10k-labels-idx1-ubyte.gz"))[8:]
    pick = [0, 1, 59999]
    imgs = torch.from_numpy(train_img[pick].copy())
    norm = T.Compose([T.ToTensor(), T.Normalize((0.1307,), (0.3081,))])
    return {
        "fmnist.train.pick": torch.tensor(pick, dtype=torch.int64),
        "fmnist.train.images": imgs,
        "fmnist.train.normalized": torch.stack([norm(train_img[i]) for i in pick]),
        "fmnist.train.labels_head": torch.from_numpy(train_lab[:32].astype(np.int64)),
        "fmnist.train.label_hist": torch.from_numpy(np.bincount(train_lab, minlength=10)),
        "fmnist.test.label_hist": torch.from_numpy(np.bincount(test_lab, minlength=10)),
    }


if __name__ == "__main__":
    out = write_images()
    out.update(transforms())
    out.update(fashion_mnist())
    out.update(distributed_sampler())
    save("data", out)
