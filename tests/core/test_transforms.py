import json
import re

import pytest
import torch
import torch.nn.functional as nnf
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from vision_lab import batch_augment as BA
from vision_lab import transforms as T


def smooth_images(n, channels, size, seed=0):
    """Random smooth uint8 images, kept away from 0 so zeros in the output come from fills."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, channels, 5, 5, generator=gen) * 215 + 20
    fine = nnf.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return fine.round().to(torch.uint8)


def per_image(spec, x):
    transform = T.build_transform(spec)
    return torch.stack([transform(image) for image in x])


def max_abs_diff(a, b):
    return (a.to(torch.int16) - b.to(torch.int16)).abs().max().item()


# One spec per op, with the (height, width) it produces from a 32 x 32 image.
ONE_OP_SPECS = [
    ({"op": "Resize", "size": 16}, (16, 16)),
    ({"op": "CenterCrop", "size": 24}, (24, 24)),
    ({"op": "RandomCrop", "size": 32, "padding": 4}, (32, 32)),
    ({"op": "RandomHorizontalFlip", "p": 0.5}, (32, 32)),
    ({"op": "RandomVerticalFlip", "p": 0.5}, (32, 32)),
    ({"op": "ColorJitter", "brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.2}, (32, 32)),
    ({"op": "RandomRotation", "degrees": 30}, (32, 32)),
    ({"op": "RandomResizedCrop", "size": [20, 24], "scale": (0.3, 1.0)}, (20, 24)),
    ({"op": "RandomGrayscale", "p": 1.0}, (32, 32)),
    ({"op": "GaussianBlur", "kernel_size": 5}, (32, 32)),
    ({"op": "RandomErasing", "p": 1.0}, (32, 32)),
]


def test_one_op_specs_cover_every_op():
    assert {spec["op"] for spec, _ in ONE_OP_SPECS} | {"Normalize"} == set(T.OPS)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("step, size", ONE_OP_SPECS, ids=[s["op"] for s, _ in ONE_OP_SPECS])
def test_every_op_gives_expected_shape(step, size, channels):
    x = smooth_images(4, channels, 32)
    single = T.build_transform([step])(x[0])
    assert single.shape == (channels, *size) and single.dtype == torch.uint8
    batch = BA.BatchAugmenter([step], image_size=32)(x, torch.Generator().manual_seed(0))
    assert batch.shape == (4, channels, *size) and batch.dtype == torch.uint8


@pytest.mark.parametrize("channels", [1, 3])
def test_normalize_gives_floats_and_is_skipped_by_batch_augmenter(channels):
    normalize = {"op": "Normalize", "mean": [0.5] * channels, "std": [0.25] * channels}
    spec = [{"op": "RandomHorizontalFlip"}, normalize]
    x = smooth_images(4, channels, 32)
    single = T.build_transform(spec)(x[0])
    assert single.shape == (channels, 32, 32) and single.dtype == torch.float32
    assert single.min() >= -2.0 and single.max() <= 2.0
    batch = BA.BatchAugmenter(spec, image_size=32)(x, torch.Generator().manual_seed(0))
    assert batch.dtype == torch.uint8 and batch.shape == x.shape


def test_build_transform_accepts_pil_images():
    image = v2.functional.to_pil_image(smooth_images(1, 3, 32)[0])
    spec = T.preset("standard", 32) + [{"op": "Normalize", "mean": [0.5] * 3, "std": [0.5] * 3}]
    out = T.build_transform(spec)(image)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32


def test_ops_table_is_plain_data_with_ui_ranges():
    json.dumps(T.OPS)
    for name, info in T.OPS.items():
        assert isinstance(info["description"], str) and info["description"]
        required = {"size": 32, "mean": [0.5], "std": [0.5]}
        step = {"op": name, **{p: required[p] for p, param in info["params"].items() if param["required"]}}
        for pname, param in info["params"].items():
            assert param["type"] in {"int", "float", "size", "range", "floats"}
            assert param["min"] < param["max"] and param["step"] > 0
            if not param["required"]:
                # Every default must itself be a valid value.
                assert T.validate_spec([{**step, pname: param["default"]}])[0][pname] == param["default"]


def test_validate_spec_normalises_without_mutating():
    spec = [
        {"op": "RandomResizedCrop", "size": (24, 32), "scale": (0.5, 1)},
        {"op": "GaussianBlur", "sigma": 1.5},
    ]
    original = json.loads(json.dumps(spec))
    assert T.validate_spec(spec) == [
        {"op": "RandomResizedCrop", "size": [24, 32], "scale": [0.5, 1], "ratio": [3 / 4, 4 / 3]},
        {"op": "GaussianBlur", "kernel_size": 3, "sigma": [1.5, 1.5]},
    ]
    assert json.loads(json.dumps(spec)) == original


@pytest.mark.parametrize(
    "spec, message",
    [
        (
            [{"op": "RandomRotation", "degrees": 400}],
            "RandomRotation: degrees must be between 0 and 180, got 400.",
        ),
        (
            [{"op": "RandomHorizontalFlip", "p": 1.5}],
            "RandomHorizontalFlip: p must be between 0 and 1, got 1.5.",
        ),
        ([{"op": "RandomHorizontalFlip", "p": True}], "RandomHorizontalFlip: p must be a number, got True."),
        ([{"op": "ColorJitter", "hue": 0.7}], "ColorJitter: hue must be between 0 and 0.5, got 0.7."),
        (
            [{"op": "ColorJitter", "brightness": -0.1}],
            "ColorJitter: brightness must be at least 0, got -0.1.",
        ),
        ([{"op": "Resize"}], "Resize: missing required parameter 'size'."),
        ([{"op": "RandomCrop", "size": 32.5}], "RandomCrop: size must be a whole number, got 32.5."),
        (
            [{"op": "RandomCrop", "size": [1, 2, 3]}],
            "RandomCrop: size must be an integer or a [height, width] pair",
        ),
        (
            [{"op": "RandomCrop", "size": 32, "pad": 4}],
            "RandomCrop: unknown parameter 'pad'; expected size, padding.",
        ),
        ([{"op": "GaussianBlur", "kernel_size": 4}], "GaussianBlur: kernel_size must be odd, got 4."),
        (
            [{"op": "GaussianBlur", "sigma": [2, 1]}],
            "GaussianBlur: sigma must be a [min, max] pair with min <= max",
        ),
        (
            [{"op": "RandomResizedCrop", "size": 32, "scale": [0, 1]}],
            "RandomResizedCrop: scale must be greater than 0 and at most 1, got 0.",
        ),
        ([{"op": "RandomErasing", "value": 300}], "RandomErasing: value must be between 0 and 255, got 300."),
        (
            [{"op": "Normalize", "mean": [0.5, 0.5], "std": [0.5, 0.5]}],
            "Normalize: mean must be a list of 1 or 3",
        ),
        (
            [{"op": "Normalize", "mean": [0.5] * 3, "std": [0.5]}],
            "Normalize: mean and std must have the same length",
        ),
        (
            [{"op": "Normalize", "mean": [0.5], "std": [0.5]}, {"op": "RandomErasing"}],
            "Normalize must be the last op, but it is op 1 of 2.",
        ),
        ([{"op": "Sharpen"}], "Unknown op 'Sharpen'; supported ops are: Resize, CenterCrop"),
        ([{"p": 0.5}], "Spec entry 0 must be a dict with an 'op' key"),
        ({"op": "RandomHorizontalFlip"}, "An augmentation spec must be a list"),
    ],
)
def test_invalid_specs_raise_specific_messages(spec, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        T.validate_spec(spec)


def test_presets():
    assert set(T.list_presets()) >= {"none", "standard", "light", "strong", "digits"}
    assert T.preset("none", 32) == []
    assert T.preset("standard", 32) == [
        {"op": "RandomCrop", "size": 32, "padding": 4},
        {"op": "RandomHorizontalFlip", "p": 0.5},
        {"op": "ColorJitter", "brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.1},
        {"op": "RandomRotation", "degrees": 15},
    ]
    assert T.preset("standard", 64)[0]["padding"] == 8
    digits = T.preset("digits", 28)
    assert {"op": "RandomCrop", "size": 28, "padding": 2} in digits
    assert not any("Flip" in step["op"] for step in digits)
    for name in T.list_presets():
        assert T.validate_spec(T.PRESETS[name](28)) == T.preset(name, 28)
    with pytest.raises(ValueError, match="Unknown preset 'huge'"):
        T.preset("huge", 32)


ROUND_TRIP_SPECS = {
    "standard": T.preset("standard", 32),
    "strong": T.preset("strong", 32),
    "digits": T.preset("digits", 32),
    "none": [],
    "everything": [step for step, _ in ONE_OP_SPECS if step["op"] != "Resize"]
    + [{"op": "Normalize", "mean": [0.4914, 0.4822, 0.4465], "std": [0.247, 0.2435, 0.2616]}],
}


@pytest.mark.parametrize("name", ROUND_TRIP_SPECS)
def test_to_code_builds_the_same_pipeline(name):
    spec = ROUND_TRIP_SPECS[name]
    code = T.to_code(spec)
    assert code.startswith("import torch\nfrom torchvision.transforms import v2\n")
    assert "transform = v2.Compose([" in code
    namespace = {}
    exec(code, namespace)
    transform, reference = namespace["transform"], T.build_transform(spec)
    for seed, image in enumerate(smooth_images(5, 3, 32)):
        torch.manual_seed(seed)
        expected = reference(image)
        torch.manual_seed(seed)
        assert torch.equal(transform(image), expected)


def test_batch_augmenter_output_and_input_untouched():
    x = smooth_images(8, 3, 32)
    before = x.clone()
    out = BA.BatchAugmenter(T.preset("strong", 32), image_size=32)(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert torch.equal(x, before)
    with pytest.raises(ValueError, match="uint8"):
        BA.BatchAugmenter([], 32)(x.float(), torch.Generator())


def test_batch_augmenter_resizes_other_sizes_to_image_size():
    x = smooth_images(4, 1, 40)
    out = BA.BatchAugmenter(T.preset("digits", 28), image_size=28)(x, torch.Generator().manual_seed(0))
    assert out.shape == (4, 1, 28, 28)


def test_flips_are_independent_per_image():
    ramp = torch.arange(32, dtype=torch.uint8).mul(8).expand(256, 3, 32, 32)
    augment = BA.BatchAugmenter([{"op": "RandomHorizontalFlip", "p": 0.5}], 32)
    out = augment(ramp, torch.Generator().manual_seed(0))
    flipped = (out == ramp.flip(-1)).flatten(1).all(dim=1)
    unchanged = (out == ramp).flatten(1).all(dim=1)
    assert torch.all(flipped ^ unchanged)
    assert 80 <= flipped.sum().item() <= 176


def test_crops_are_independent_per_image():
    x = smooth_images(1, 3, 32).expand(64, -1, -1, -1)
    augment = BA.BatchAugmenter([{"op": "RandomCrop", "size": 32, "padding": 4}], 32)
    out = augment(x, torch.Generator().manual_seed(0))
    assert len(torch.unique(out.flatten(1), dim=0)) > 20


def test_batch_augmenter_is_deterministic_per_generator_seed():
    x = smooth_images(16, 3, 32)
    augment = BA.BatchAugmenter(T.preset("strong", 32) + [{"op": "GaussianBlur", "kernel_size": 3}], 32)
    first = augment(x, torch.Generator().manual_seed(7))
    assert torch.equal(first, augment(x, torch.Generator().manual_seed(7)))
    assert not torch.equal(first, augment(x, torch.Generator().manual_seed(8)))


# Specs whose random draws are degenerate, so batch and per-image results must agree pixel for
# pixel (up to 1 grey level: torchvision's uint8 resize uses fixed-point arithmetic).
FIXED_SPECS = [
    [{"op": "RandomHorizontalFlip", "p": 1.0}, {"op": "RandomVerticalFlip", "p": 1.0}],
    [{"op": "RandomGrayscale", "p": 1.0}],
    [{"op": "GaussianBlur", "kernel_size": 5, "sigma": 1.3}],
    [{"op": "RandomResizedCrop", "size": 20, "scale": [1, 1], "ratio": [1, 1]}],
    [{"op": "RandomResizedCrop", "size": 48, "scale": [1, 1], "ratio": [1, 1]}],
    # No attempt fits, so both fall back: a central crop, and no erasing.
    [{"op": "RandomResizedCrop", "size": 32, "scale": [0.99, 1], "ratio": [3, 4]}],
    [{"op": "RandomErasing", "p": 1, "scale": [0.99, 1], "ratio": [1, 1]}],
    [{"op": "Resize", "size": [20, 40]}, {"op": "CenterCrop", "size": 18}],
    [{"op": "RandomRotation", "degrees": 0}, {"op": "ColorJitter"}, {"op": "RandomErasing", "p": 0}],
]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("spec", FIXED_SPECS, ids=lambda spec: "+".join(step["op"] for step in spec))
def test_batch_matches_per_image_when_parameters_are_fixed(spec, channels):
    x = smooth_images(8, channels, 32)
    out = BA.BatchAugmenter(spec, 32)(x, torch.Generator().manual_seed(0))
    assert max_abs_diff(out, per_image(spec, x)) <= 1


@pytest.mark.parametrize("channels", [1, 3])
def test_batch_kernels_match_torchvision_for_given_parameters(channels):
    # The random ops' kernels, called with chosen per-image parameters.
    x = smooth_images(4, channels, 32)
    xf = x.float()
    factors = [0.0, 0.6, 1.0, 1.4]
    shifts = [-0.5, -0.1, 0.2, 0.45]
    angles = [-20.0, 3.5, 45.0, 170.0]
    factor = torch.tensor(factors).reshape(4, 1, 1, 1)
    cases = [
        (BA._adjust_brightness(xf, factor), [TF.adjust_brightness(i, f) for i, f in zip(x, factors)]),
        (BA._adjust_contrast(xf, factor), [TF.adjust_contrast(i, f) for i, f in zip(x, factors)]),
        (BA._adjust_saturation(xf, factor), [TF.adjust_saturation(i, f) for i, f in zip(x, factors)]),
        (BA._adjust_hue(xf, torch.tensor(shifts)), [TF.adjust_hue(i, s) for i, s in zip(x, shifts)]),
        (BA._rotate(xf, torch.tensor(angles)), [TF.rotate(i, a) for i, a in zip(x, angles)]),
    ]
    for batch, expected in cases:
        assert max_abs_diff(batch.to(torch.uint8), torch.stack(expected)) <= 1


def test_pixels_are_the_augmented_batch_as_whole_float_values():
    x = smooth_images(16, 3, 32)
    augment = BA.BatchAugmenter(T.preset("strong", 32) + [{"op": "GaussianBlur", "kernel_size": 3}], 32)
    pixels = augment.pixels(x, torch.Generator().manual_seed(3))
    assert pixels.dtype == torch.float32 and pixels.is_contiguous()
    # Whole numbers in [0, 255] (what the uint8 kernels give), so the uint8 result loses nothing.
    assert torch.equal(pixels, pixels.round().clamp(0, 255))
    assert torch.equal(pixels.to(torch.uint8), augment(x, torch.Generator().manual_seed(3)))


def test_rotate_picks_the_pixels_grid_sample_picks():
    # _rotate computes nearest-neighbour sources itself; they must be exactly affine_grid +
    # grid_sample's (nearest, zero fill), the path v2.functional.rotate takes. (Angles that put
    # a source exactly halfway between two pixels, such as 45 degrees on a non-square image, may
    # round either way: float arithmetic in another order. Random angles never do.)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(1, 256, (256, 3, 24, 32), generator=gen).float()
    angles = torch.cat([torch.rand(250, generator=gen) * 360 - 180,
                        torch.tensor([0.0, 90.0, -90.0, 180.0, 15.0, -7.5])])
    n, c, h, w = x.shape
    rad = torch.deg2rad(angles)
    cos, sin, zero = rad.cos(), rad.sin(), torch.zeros_like(rad)
    theta = torch.stack([torch.stack([cos, -sin * (h / w), zero], 1), torch.stack([sin * (w / h), cos, zero], 1)], 1)
    grid = nnf.affine_grid(theta, [n, c, h, w], align_corners=False)
    expected = nnf.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    assert torch.equal(BA._rotate(x, angles), expected)


@pytest.mark.parametrize("name, channels, size", [("standard", 3, 32), ("strong", 3, 32), ("digits", 1, 28)])
def test_batch_statistics_match_per_image_pipeline(name, channels, size):
    spec = T.preset(name, size)
    x = smooth_images(512, channels, size, seed=1)
    torch.manual_seed(0)
    reference = per_image(spec, x).float()
    batch = BA.BatchAugmenter(spec, size)(x, torch.Generator().manual_seed(0)).float()

    dims = (0, 2, 3)
    assert torch.allclose(batch.mean(dims), reference.mean(dims), atol=0.02 * 255)
    assert torch.allclose(batch.std(dims), reference.std(dims), atol=0.03 * 255)
    zeros_batch = (batch == 0).float().mean().item()
    zeros_reference = (reference == 0).float().mean().item()
    assert zeros_reference > 0.01  # the fills really are exercised
    assert abs(zeros_batch - zeros_reference) < 0.02


def test_preprocessing_normalizes():
    from vision_lab.preprocessing import Preprocessing

    mean, std = (0.4914, 0.4822, 0.4465), (0.247, 0.2435, 0.2616)
    constant = torch.tensor(mean).mul(255).round().to(torch.uint8).reshape(1, 3, 1, 1).expand(2, 3, 32, 32)
    out = Preprocessing(3, 32, mean, std)(constant)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 32, 32)
    assert out.abs().max() < 0.01


def test_preprocessing_resizes_like_v2():
    from vision_lab.preprocessing import Preprocessing

    x = smooth_images(3, 1, 40)
    out = Preprocessing(1, 28, (0.1307,), (0.3081,))(x)
    assert out.shape == (3, 1, 28, 28)
    reference = v2.Compose(
        [v2.Resize([28, 28]), v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.1307], [0.3081])]
    )
    # v2 resizes uint8 and rounds; Preprocessing resizes floats: within one grey level of it.
    one_grey_level = 1 / (255 * 0.3081)
    assert torch.allclose(out, torch.stack([reference(image) for image in x]), atol=1.01 * one_grey_level)
