"""Regenerate README's figures: ``python docs/figures/regenerate.py [--lenet_workdir=runs/lenet]
[--sweep_workdir=runs/conv_ablation]`` (from the repository root).

- ``kernels.png``: the classic 3x3 kernels on scikit-image's camera photograph (``cnnjax.plots``).
- ``hog.png``: a Fashion-MNIST image of each class beside its HOG cells, what ``configs/hog_svm.py`` classifies.
- ``lenet/{learning_curves,confusion_matrix,most_confused}.png``: ``experiments.report`` of the LeNet-5 run in
  ``--lenet_workdir``; the run is trained first (``python -m experiments.run --config=lenet --workdir=DIR``,
  about 2 minutes on 2 idle CPU cores) when that workdir holds no finished run.
- ``conv_ablation/*.png``: the plots of the convolution-variant sweep in ``--sweep_workdir``, copied when that
  sweep exists (``python -m experiments.sweep --config=conv_ablation --workdir=runs/conv_ablation``, about an hour);
  skipped with a message otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "docs", "figures")


def kernels_figure() -> str:
    from skimage import data

    from cnnjax.plots import plot_kernel_gallery

    path = os.path.join(OUT, "kernels.png")
    plot_kernel_gallery(data.camera()[::2, ::2]).savefig(path, dpi=80)
    return path


def hog_figure() -> str:
    import numpy as np
    from skimage.feature import hog

    from cnnjax.data.sources import FASHION_MNIST_CLASSES, load_idx_split
    from cnnjax.plots import plot_image_grid

    test = load_idx_split("/usr/share/datasets/fashion-mnist", "test")
    first = [int(np.flatnonzero(test.labels == c)[0]) for c in range(10)]
    images, titles = [], []
    for c, i in enumerate(first):
        image = test.images[i, ..., 0]
        _, picture = hog(image, orientations=9, pixels_per_cell=(4, 4), cells_per_block=(2, 2), visualize=True)
        images += [image, picture]
        titles += [FASHION_MNIST_CLASSES[c], "HOG 4x4 cells"]
    path = os.path.join(OUT, "hog.png")
    plot_image_grid(images, titles, ncols=10, size=1.3).savefig(path, dpi=90)
    return path


def lenet_figures(workdir: str) -> list[str]:
    if not os.path.exists(os.path.join(workdir, "summary.json")):
        subprocess.run([sys.executable, "-m", "experiments.run", "--config=lenet", f"--workdir={workdir}"], cwd=ROOT,
                       check=True)
    from cnnjax.training.report import write_report

    return write_report(workdir, os.path.join(OUT, "lenet"))


def sweep_figures(workdir: str) -> list[str]:
    pngs = sorted(f for f in os.listdir(workdir) if f.endswith(".png")) if os.path.isdir(workdir) else []
    if not pngs:
        print(f"skipped conv_ablation: no plots in {workdir} (python -m experiments.sweep --config=conv_ablation "
              f"--workdir={workdir})")
        return []
    os.makedirs(os.path.join(OUT, "conv_ablation"), exist_ok=True)
    return [shutil.copy(os.path.join(workdir, f), os.path.join(OUT, "conv_ablation", f)) for f in pngs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lenet_workdir", default="runs/lenet", help="a LeNet-5 run (trained here if unfinished)")
    parser.add_argument("--sweep_workdir", default="runs/conv_ablation", help="a conv_ablation sweep (optional)")
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    lenet, sweep = (os.path.join(ROOT, d) for d in (args.lenet_workdir, args.sweep_workdir))
    for path in [kernels_figure(), hog_figure(), *lenet_figures(lenet), *sweep_figures(sweep)]:
        print(os.path.relpath(path, ROOT))


if __name__ == "__main__":
    main()
