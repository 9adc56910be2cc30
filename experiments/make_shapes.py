"""A small synthetic image folder to try --data_type folder on: coloured circles, squares and
triangles at random positions on 48x64 RGB canvases, written as PNG files, one sub-folder
per class. The class is the shape; colour, size and position are random.

    python experiments/make_shapes.py data/shapes --per_class 300
    python main.py --data_type folder --data_dir data/shapes --run_name shapes --epochs 30
"""

import argparse
import os

import numpy as np

CLASSES = ("circle", "square", "triangle")


def draw(shape, rng, size=(48, 64)):
    """One (H, W) RGB Pillow image of `shape`, radius 9-15 px, fully inside, random bright colour."""
    from PIL import Image, ImageDraw

    H, W = size
    image = Image.new("RGB", (W, H), tuple(int(v) for v in rng.integers(0, 40, 3)))
    r = int(rng.integers(9, 16))
    cx, cy = int(rng.integers(r, W - r)), int(rng.integers(r, H - r))
    colour = tuple(int(v) for v in rng.integers(90, 256, 3))
    pen = ImageDraw.Draw(image)
    if shape == "circle":
        pen.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif shape == "square":
        pen.rectangle((cx - r, cy - r, cx + r, cy + r), fill=colour)
    else:
        pen.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    return image


def make_shapes(root, *, per_class, seed=0, size=(48, 64), classes=CLASSES):
    """Write per_class PNG images of each class to root/<class>/<i>.png; returns root."""
    rng = np.random.default_rng(seed)
    for shape in classes:
        os.makedirs(os.path.join(root, shape), exist_ok=True)
        for i in range(per_class):
            draw(shape, rng, size).save(os.path.join(root, shape, f"{i:04d}.png"))
    return root


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", help="folder to write (one sub-folder per class)")
    p.add_argument("--per_class", type=int, default=300, help="images per class")
    p.add_argument("--seed", type=int, default=0, help="seed of the shapes' colours, sizes and positions")
    args = p.parse_args()
    print(make_shapes(args.root, per_class=args.per_class, seed=args.seed))


if __name__ == "__main__":
    main()
