"""Make the shipped backbone, checkpoints/backbones/cnn_textures.safetensors (see vision_lab/backbone.py).

Pretrains the course CNN on the procedural textures task (10,000 images, 2 epochs, Adam) and keeps
its convolutional part (369 KB). Seeded throughout: on the CPU with the same torch and thread
count it should make the same weights (compare the metadata's sha256). On the 2-core development
VM (torch 2.14.1, two threads) it took 3 min of CPU time (9.5 min of wall time while other jobs
shared the cores); textures test accuracy 87.6% (12 classes).

    python scripts/make_backbone.py
    python scripts/make_backbone.py --out /tmp/backbone.safetensors
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vision_lab.backbone import (BACKBONE_PATH, METADATA_KEY, TEXTURES, make_textures,  # noqa: E402
                                 weights_checksum)
from vision_lab.models import create_model  # noqa: E402

RECIPE = {"train_images": 10000, "test_images": 1200, "epochs": 2, "batch_size": 64, "lr": 1e-3,
          "optimizer": "adam", "seed": 0, "data_seed": 0}


def _normalize(images: torch.Tensor) -> torch.Tensor:
    # The textures' colours are uniform in [0, 1]: mean 0.5 and std about 0.25 per channel.
    return (images.float() / 255 - 0.5) / 0.25


def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        predicted = torch.cat([model(_normalize(x)).argmax(1) for x in images.split(500)])
    return (predicted == labels).float().mean().item()


def pretrain(recipe: dict) -> tuple[torch.nn.Module, dict]:
    train_x, train_y = make_textures(recipe["train_images"], 2 * recipe["data_seed"])
    test_x, test_y = make_textures(recipe["test_images"], 2 * recipe["data_seed"] + 1)
    torch.manual_seed(recipe["seed"])
    model = create_model("cnn", num_classes=len(TEXTURES), in_channels=3, image_size=32)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe["lr"])
    order = torch.Generator().manual_seed(recipe["seed"])
    for epoch in range(1, recipe["epochs"] + 1):
        model.train()
        for batch in torch.randperm(len(train_x), generator=order).split(recipe["batch_size"]):
            loss = F.cross_entropy(model(_normalize(train_x[batch])), train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch}: loss {loss.item():.3f}, test accuracy {accuracy(model, test_x, test_y):.4f}",
              flush=True)
    return model, {"test_acc": accuracy(model, test_x, test_y), "train_acc": accuracy(model, train_x[:2000], train_y[:2000])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=BACKBONE_PATH)
    args = p.parse_args(argv)
    started = time.perf_counter()
    model, metrics = pretrain(RECIPE)
    tensors = {k: v.detach().contiguous() for k, v in model.features.state_dict().items()}
    meta = {"model": "cnn", "part": "features", "task": "textures", "classes": list(TEXTURES),
            "recipe": RECIPE, "metrics": metrics, "seconds": round(time.perf_counter() - started),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "shapes": {k: list(v.shape) for k, v in tensors.items()},
            "sha256": weights_checksum(tensors), "script": "scripts/make_backbone.py"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(args.out), metadata={METADATA_KEY: json.dumps(meta)})
    print(f"{args.out}: {args.out.stat().st_size / 1024:.0f} KB, textures test accuracy "
          f"{metrics['test_acc']:.4f}, {meta['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
