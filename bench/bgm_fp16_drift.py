"""FP16 drift of a Background Matting v1 bundle on real composites (prints a table).

No clean plates exist for composites of unknown background, so each image is its own ``src``,
a heavily blurred copy (Gaussian, sigma = 5% of the image width) stands in for the plate ``bgr``,
and ``seg`` is the ground-truth matte processed the official way (threshold, erode, dilate,
blur). Activations of a random network still exercise FP16 range; the figures are |FP16 - FP32|
of pha and fgr at the model input, and the count of non-finite FP16 values.

    python bench/bgm_fp16_drift.py --bundle runs/bgm512 --data ../shared/data/composite-dev --limit 8
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import ndimage

from matting_deploy.bundle import Bundle
from matting_deploy.data.bgm import BgmInputs
from matting_deploy.data.imaging import load_image, load_matte
from matting_deploy.data.pairs import ppm_pairs
from matting_deploy.data.preprocess import to_model_input
from matting_deploy.runtimes.open import open_runner


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--data", required=True, help="PPM-100 layout with image/ and matte/")
    ap.add_argument("--limit", type=int, default=8)
    args = ap.parse_args()
    bundle = Bundle.open(args.bundle)
    h, w = bundle.input_hw
    pairs, _ = ppm_pairs(args.data)
    fp32, fp16 = open_runner(bundle, "fp32"), open_runner(bundle, "fp16")
    rows = []
    for pair in pairs[: args.limit]:
        image, matte = load_image(pair.image), load_matte(pair.matte)
        sigma = 0.05 * image.shape[1]
        plate = np.stack([ndimage.gaussian_filter(image[..., c], sigma) for c in range(3)], -1)
        src, _ = to_model_input(image, h, w)
        # mask_fn's result goes through official_seg inside BgmInputs: the matte is the raw mask.
        extra = BgmInputs(h, w, mask_fn=lambda _img, m=matte: m, plate=plate).extra(None, image)
        a, b = fp32.run(src, **extra), fp16.run(src, **extra)
        rows.append((pair.name, *(float(np.abs(b[k] - a[k]).max()) for k in ("pha", "fgr")),
                     float(np.abs(b["pha"] - a["pha"]).mean()),
                     sum(int(v.size - np.isfinite(v).sum()) for v in b.values()), float(a["pha"].std())))
    print(f"{bundle.model} {h}x{w}: FP16 vs FP32 on {len(rows)} composites (src = image, bgr = blurred image, "
          "seg = official processing of the matte)")
    print(f"{'image':<28} {'max|dpha|':>10} {'max|dfgr|':>10} {'mean|dpha|':>11} {'nonfinite':>9} {'pha std':>8}")
    for name, mp, mf, mean, bad, std in rows:
        print(f"{name:<28} {mp:10.2e} {mf:10.2e} {mean:11.2e} {bad:9d} {std:8.3f}")
    worst = np.max([r[1:3] for r in rows], axis=0)
    print(f"worst: pha {worst[0]:.2e}, fgr {worst[1]:.2e}; non-finite values: {sum(r[4] for r in rows)}")


if __name__ == "__main__":
    main()
