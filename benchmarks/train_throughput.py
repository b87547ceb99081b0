"""Training throughput: vision_lab's train() vs the course-style PIL pipeline vs the compute floor.

Variants, per model (cnn, mlp), all batch 64, Adam, CIFAR-shaped 32x32 RGB uint8 images in memory,
the `standard` augmentation (RandomCrop(32, pad 4), HorizontalFlip, ColorJitter(.2, .2, .2, .1),
RandomRotation(15)):

- course_w0 / course_w2: the course's code. A torchvision.datasets-style dataset that returns PIL
  images, transforms.Compose of the PIL transforms + ToTensor + Normalize, a DataLoader(batch 64,
  shuffle) with num_workers 0 or 2, and the usual loop (zero_grad, forward, loss, backward, step,
  loss.item(), accuracy count). The baseline is the faster of the two.
- floor: the compute floor, one ready-made normalized float batch: forward, backward, step,
  loss.item(), with the model and optimizer set up as vision_lab sets them up (fused Adam; conv
  models in channels_last). floor_course: the same with the course's settings (default Adam,
  contiguous), which is the floor of the course pipeline and the 840 images/s of issue #3.
- vision_lab: `vision_lab.training.train()` consumed as the app and the CLI consume it; every
  event it yields is taken.

What is counted: images per second between the step-end timestamps of batch `warmup` and batch
`warmup + batches` (`course_batches` for the course variants; for vision_lab, the arrival of the
BatchEnd events). That covers data loading, augmentation, normalization, forward, backward, step
and per-batch bookkeeping, and leaves out start-up (model creation, DataLoader workers) and the
per-epoch evaluation and checkpoint save.
Rounds interleave the variants; the table shows medians over rounds, and each ratio is the
median of the per-round ratios.

The process runs with glibc malloc keeping freed memory (vision_lab.serving.malloc), as vision_lab's
training processes do (the CLI's `train`, the app's runs). The setting is process-wide, so every
variant here gets it, the course pipeline included: the ratios compare the pipelines, and
`floor.py --allocator` measures what the setting itself is worth.
"""
from __future__ import annotations

import tempfile
import threading
import time

from _common import emit, machine, median, minor_page_faults, parser

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from vision_lab.datasets import ImageData
from vision_lab.serving.malloc import keep_freed_memory
from vision_lab.models import create_model
from vision_lab.preprocessing import Preprocessing
from vision_lab.train_config import BatchEnd, TrainConfig
from vision_lab.training import train
from vision_lab.batch_augment import BatchAugmenter
from vision_lab.transforms import preset

BATCH = 64
SIZE = 32


def make_data(n_train: int, n_test: int = 64, seed: int = 0) -> ImageData:
    """Random CIFAR-shaped uint8 images (content does not change the cost of any variant)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n_train + n_test, 3, SIZE, SIZE), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n_train + n_test,), generator=g)
    return ImageData("bench", [str(i) for i in range(10)], 3, SIZE, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25),
                     images[:n_train], labels[:n_train], images[n_train:], labels[n_train:])


class CourseDataset(Dataset):
    """Like torchvision's CIFAR10 / MNIST datasets: uint8 numpy in memory (HWC, or HW for one
    channel), a PIL image per item."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform):
        hwc = images.permute(0, 2, 3, 1).contiguous().numpy()
        self.data = hwc[..., 0] if hwc.shape[-1] == 1 else hwc
        self.targets = labels.tolist()
        self.transform = transform

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.data[i])), self.targets[i]


def course_transform(mean, std):
    return T.Compose([
        T.RandomCrop(SIZE, padding=4),
        T.RandomHorizontalFlip(),
        T.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.1),
        T.RandomRotation(15),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])


def library_model(model_name: str):
    """The model as vision_lab's train() sets it up on CPU."""
    model = create_model(model_name, 10, 3, SIZE)
    if any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        model = model.to(memory_format=torch.channels_last)
    return model


def steps_per_second(stamps: list[float], warmup: int, batches: int) -> float:
    return batches * BATCH / (stamps[warmup + batches] - stamps[warmup])


def run_course(model, optimizer, data: ImageData, workers: int, warmup: int, batches: int) -> float:
    dataset = CourseDataset(data.train_images, data.train_labels, course_transform(data.mean, data.std))
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers, drop_last=True)
    model.train()
    stamps = [time.perf_counter()]
    running_loss, correct = 0.0, 0
    for i, (x, y) in enumerate(loader):
        optimizer.zero_grad()
        out = model(x)
        loss = F.cross_entropy(out, y)
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
        correct += (out.argmax(1) == y).sum().item()
        stamps.append(time.perf_counter())
        if len(stamps) > warmup + batches:
            break
    del loader  # shuts the workers down
    return steps_per_second(stamps, warmup, batches)


def run_floor(model, optimizer, x, y, warmup: int, batches: int) -> float:
    model.train()
    stamps = [time.perf_counter()]
    for _ in range(warmup + batches):
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        loss.item()
        stamps.append(time.perf_counter())
    return steps_per_second(stamps, warmup, batches)


def run_vision_lab(model_name: str, data: ImageData, warmup: int, batches: int, out_dir: str) -> float:
    config = TrainConfig(model=model_name, augment="standard", epochs=1, batch_size=BATCH,
                         device="cpu", out=f"{out_dir}/bench.safetensors")
    events = train(config, threading.Event(), data=data)
    stamps = []
    for ev in events:
        if isinstance(ev, BatchEnd):
            stamps.append(time.perf_counter())
            if len(stamps) > warmup + batches:
                break
    events.close()  # before the epoch's evaluation and checkpoint: they are not counted
    # stamps[0] is the end of step 1, so this counts steps warmup+2 .. warmup+batches+1.
    return steps_per_second(stamps, warmup, batches)


def bench_model(model_name: str, rounds: int, warmup: int, batches: int, workers_list, out_dir: str,
                course_batches: int | None = None) -> dict:
    course_batches = course_batches or batches
    data = make_data((warmup + max(batches, course_batches) + 1) * BATCH)
    torch.manual_seed(0)
    prep = Preprocessing(3, SIZE, data.mean, data.std)
    course_models = {w: create_model(model_name, 10, 3, SIZE) for w in workers_list}
    course_opts = {w: torch.optim.Adam(m.parameters(), lr=1e-3) for w, m in course_models.items()}
    floor_model = library_model(model_name)
    floor_opt = torch.optim.Adam(floor_model.parameters(), lr=1e-3, fused=True)
    course_floor_model = create_model(model_name, 10, 3, SIZE)
    course_floor_opt = torch.optim.Adam(course_floor_model.parameters(), lr=1e-3)
    augment = BatchAugmenter(preset("standard", SIZE), SIZE)
    x = prep(augment(data.train_images[:BATCH], torch.Generator().manual_seed(0)))
    y = data.train_labels[:BATCH]

    runs = {f"course_w{w}": [] for w in workers_list} | {"floor_course": [], "floor": [], "vision_lab": []}
    faults = {"floor": [], "vision_lab": []}  # per batch, warm-up included
    for _ in range(rounds):
        for w in workers_list:
            runs[f"course_w{w}"].append(run_course(course_models[w], course_opts[w], data, w, warmup,
                                                   course_batches))
        runs["floor_course"].append(run_floor(course_floor_model, course_floor_opt, x, y, warmup, batches))
        before = minor_page_faults()
        runs["floor"].append(run_floor(floor_model, floor_opt, x, y, warmup, batches))
        middle = minor_page_faults()
        runs["vision_lab"].append(run_vision_lab(model_name, data, warmup, batches, out_dir))
        if before is not None:
            faults["floor"].append((middle - before) / (warmup + batches))
            faults["vision_lab"].append((minor_page_faults() - middle) / (warmup + batches))
    course_best = [max(runs[f"course_w{w}"][r] for w in workers_list) for r in range(rounds)]
    result = {f"{k}_images_per_sec": median(v) for k, v in runs.items()}
    result["course_best_images_per_sec"] = median(course_best)
    result["vision_lab_vs_floor"] = median([v / f for v, f in zip(runs["vision_lab"], runs["floor"])])
    result["vision_lab_vs_course"] = median([v / c for v, c in zip(runs["vision_lab"], course_best)])
    result["vision_lab_vs_floor_course"] = median([v / f for v, f in zip(runs["vision_lab"], runs["floor_course"])])
    result["course_vs_floor_course"] = median([c / f for c, f in zip(course_best, runs["floor_course"])])
    result["floor_vs_floor_course"] = median([a / b for a, b in zip(runs["floor"], runs["floor_course"])])
    for k, v in faults.items():
        result[f"{k}_page_faults_per_batch"] = median(v)
    result["rounds"] = {k: [round(v, 1) for v in vs] for k, vs in runs.items()}
    return result


def main(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--models", default="cnn,mlp")
    p.add_argument("--rounds", type=int, default=5)
    # 32: a whole number of vision_lab's augmentation chunks (4 batches of CIFAR images), so every
    # counted window pays for the same share of augmentation as a whole epoch does.
    p.add_argument("--batches", type=int, default=32, help="counted batches per variant and round")
    # The course variants are the slowest and the targets against them have the widest margins.
    p.add_argument("--course-batches", type=int, default=16,
                   help="counted batches of the course variants per round")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--workers", default="0,2", help="DataLoader num_workers of the course variants")
    args = p.parse_args(argv)
    keep_freed_memory()
    if args.quick:
        args.rounds, args.batches, args.course_batches, args.warmup = 1, 2, 2, 1
    workers_list = [int(w) for w in args.workers.split(",")]
    t0 = time.perf_counter()
    result = {"machine": machine(), "batch_size": BATCH, "augment": "standard",
              "rounds": args.rounds, "batches": args.batches, "course_batches": args.course_batches,
              "warmup": args.warmup}
    rows = []
    with tempfile.TemporaryDirectory() as out_dir:
        for name in args.models.split(","):
            r = bench_model(name, args.rounds, args.warmup, args.batches, workers_list, out_dir,
                            args.course_batches)
            result[name] = r
            for w in workers_list:
                rows.append((f"{name} course PIL pipeline, {w} workers", r[f"course_w{w}_images_per_sec"], "images/s"))
            rows += [(f"{name} compute floor, course settings", r["floor_course_images_per_sec"], "images/s"),
                     (f"{name} compute floor, vision_lab settings", r["floor_images_per_sec"], "images/s"),
                     (f"{name} vision_lab train()", r["vision_lab_images_per_sec"], "images/s"),
                     (f"{name} vision_lab / floor", r["vision_lab_vs_floor"], "target >= 0.90 (cnn)"),
                     (f"{name} vision_lab / course pipeline", r["vision_lab_vs_course"],
                      "target >= 1.45 (cnn), >= 3 (mlp)"),
                     (f"{name} vision_lab / course-settings floor", r["vision_lab_vs_floor_course"], ""),
                     (f"{name} course pipeline / course-settings floor", r["course_vs_floor_course"], ""),
                     (f"{name} floor raised by (fused Adam, channels_last)", r["floor_vs_floor_course"], ""),
                     (f"{name} page faults per batch, floor / vision_lab",
                      f"{r['floor_page_faults_per_batch']:,.0f} / {r['vision_lab_page_faults_per_batch']:,.0f}",
                      "many: allocator noise")]
    result["seconds"] = round(time.perf_counter() - t0, 1)
    emit("train_throughput", result, rows, args.json)
    return result


if __name__ == "__main__":
    main()
