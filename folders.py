"""Your own images (--data_type folder): scan a folder of class sub-folders, split it, decode
it once into a uint8 cache, and read single image files for --explain_image.

Layout (torchvision's ImageFolder): PATH/<class>/<any sub-folders>/<image>, classes in
sorted order of their folder names; or PATH/train, PATH/val and PATH/test, each holding
the same class folders, which are then the splits. Otherwise the split is drawn per class
(stratified) from --data_seed with --valid_size and --test_size, and written to the run's
ckpt/<run>/split.json when training starts, so a resumed or tested run reads the same files.

Images: every file Pillow can open is one; any other file (a README, .DS_Store) is skipped
and counted, and hidden files are ignored. Grey images (modes 1, L, LA, I, F) give one
channel, the rest three (RGB; an alpha channel is dropped, a palette resolved); a folder
with both is refused. Images keep their size when they all share one; else, or with
--image_size H W, each is resized to H x W (bilinear, aspect ratio not kept).

The decoded images of a folder are cached in --cache_dir as one uint8 .npz with a manifest
of every file's size and modification time: a changed folder is decoded again.
"""

import functools
import hashlib
import json
import os
import sys

import numpy as np
from tqdm import tqdm

from arguments import ConfigError, check_retina
from utils import atomic_write, read_arrays, write_arrays

FOLDER_FORMAT = 1  # bump when decoding changes what it produces: old caches are then rebuilt
SPLIT_FILE = "split.json"
SPLIT_FOLDERS = {"train": "train", "valid": "val", "test": "test"}
GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def _visible(names):
    return sorted(n for n in names if not n.startswith("."))


def _class_folders(path):
    return [n for n in _visible(os.listdir(path)) if os.path.isdir(os.path.join(path, n))]


def _files_under(root, folder):
    """Paths relative to root of every visible file under root/folder, sorted."""
    found = []
    for here, dirs, files in os.walk(os.path.join(root, folder)):
        dirs[:] = _visible(dirs)
        found += [os.path.relpath(os.path.join(here, f), root) for f in _visible(files)]
    return sorted(found)


def scan(root):
    """(layout, classes, {part: {class: [relative paths]}}) of the folder at root; part is a
    split name for the train/val/test layout, else "all". ConfigError for a missing folder,
    fewer than 2 classes, or a partial or inconsistent train/val/test layout."""
    if not os.path.isdir(root):
        raise ConfigError(f"--data_dir {root} is not a folder (--data_type folder reads one sub-folder per class)")
    present = [name for name in SPLIT_FOLDERS.values() if os.path.isdir(os.path.join(root, name))]
    if present and len(present) < len(SPLIT_FOLDERS):
        raise ConfigError(f"{root} has {', '.join(n + '/' for n in present)} but not "
                          f"{', '.join(n + '/' for n in SPLIT_FOLDERS.values() if n not in present)}: give "
                          f"all three split folders, or only class folders to split with --valid_size/--test_size")
    parts = {split: os.path.join(root, name) for split, name in SPLIT_FOLDERS.items()} if present else {"all": root}
    classes = _class_folders(parts.get("train", root))
    if len(classes) < 2:
        where = parts.get("train", root)
        raise ConfigError(f"{where} has {len(classes)} class folder(s){': ' + classes[0] if classes else ''}; "
                          f"a classifier needs at least 2 (one sub-folder per class)")
    files = {}
    for part, path in parts.items():
        if part != "all" and _class_folders(path) != classes:
            raise ConfigError(f"{path} holds the class folders {_class_folders(path)}, but train/ holds {classes}: "
                              f"every split needs the same classes")
        base = os.path.relpath(path, root)
        files[part] = {c: _files_under(root, os.path.normpath(os.path.join(base, c))) for c in classes}
    return ("splits" if present else "classes"), classes, files


def stratified_split(files, *, valid_size, test_size, seed):
    """{split: [(path, class index)]} drawn per class: of each class's n files (sorted, then
    shuffled by a generator seeded with `seed`), max(1, round(n * test_size)) go to test,
    max(1, round(n * valid_size)) to valid, the rest to train; every split keeps class order."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    out = {"train": [], "valid": [], "test": []}
    for label, (name, paths) in enumerate(files.items()):
        n = len(paths)
        n_test, n_valid = max(1, round(n * test_size)), max(1, round(n * valid_size))
        if n - n_test - n_valid < 1:
            raise ConfigError(f"class {name} has {n} image(s): too few to hold out validation and test images "
                              f"and keep one to train on (--valid_size {valid_size}, --test_size {test_size})")
        order = [paths[i] for i in rng.permutation(n)]
        for split, chosen in (("test", order[:n_test]), ("valid", order[n_test:n_test + n_valid]),
                              ("train", order[n_test + n_valid:])):
            out[split] += [(p, label) for p in sorted(chosen)]
    return out


def _open(path):
    """A Pillow image of path, loaded, or None when it is not an image Pillow can read."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
        image.load()
        return image
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


def to_array(image, *, channels, size):
    """uint8 (C, H, W) of a Pillow image as `channels` (1: grey, 3: RGB), resized to size =
    (H, W) when given and different (bilinear)."""
    from PIL import Image

    image = image.convert("L" if channels == 1 else "RGB")
    if size is not None and (image.height, image.width) != tuple(size):
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1).copy()  # (C, H, W)


def channels_of(image):
    return 1 if image.mode in GREY_MODES else 3


def decode(root, paths, *, size):
    """Decode root/paths: (uint8 (N, C, H, W) of the readable ones, their paths, the skipped
    paths). ConfigError for a mix of grey and colour images, or (without size) of sizes."""
    images, kept, skipped = [], [], []
    channels, shapes, example = None, {}, {}
    for path in tqdm(paths, desc="decoding images", unit="img", delay=1.0):
        image = _open(os.path.join(root, path))
        if image is None:
            skipped.append(path)
            continue
        c = channels_of(image)
        example.setdefault(c, path)
        if channels is None:
            channels = c
        elif c != channels:
            raise ConfigError(f"the folder mixes grey and colour images ({example[1]} is grey, {example[3]} "
                              f"colour): convert them to one kind")
        shapes.setdefault((image.height, image.width), path)
        if size is None and len(shapes) > 1:
            (h0, w0), (h1, w1) = list(shapes)[:2]
            raise ConfigError(f"the images differ in size ({shapes[(h0, w0)]} is {h0}x{w0}, {path} is "
                              f"{h1}x{w1}): give --image_size H W to resize them all")
        images.append(to_array(image, channels=channels, size=size))
        kept.append(path)
    if not images:
        raise ConfigError(f"{root} holds no image Pillow can read ({len(skipped)} other file(s) skipped)")
    return np.stack(images), kept, skipped


def cache_path(config):
    """The .npz caching config's folder (its manifest: the same path with .json)."""
    key = hashlib.sha256(os.path.abspath(config.data_dir).encode()).hexdigest()[:16]
    return os.path.join(config.cache_dir, f"folder_{key}.npz")


def _manifest(root, paths, size):
    stats = {}
    for path in paths:
        st = os.stat(os.path.join(root, path))
        stats[path] = [st.st_size, st.st_mtime_ns]
    return {"format": FOLDER_FORMAT, "folder": os.path.abspath(root), "size": size, "files": stats}


def decoded(config, paths, size):
    """({path: uint8 (C, H, W)}, the skipped paths, save): from the cache when it holds exactly
    these files unchanged at this size (save is then None), else decoded, and save() writes
    the cache -- called by the caller once the images pass its checks."""
    root, path = config.data_dir, cache_path(config)
    manifest = _manifest(root, paths, size)
    arrays, why = read_arrays(path, manifest, {"images", "kept"})
    save = None
    if arrays is None:
        if why:
            print(f"decoding {root} again: its cache {path} is out of date ({why})", file=sys.stderr)
        images, kept, _ = decode(root, paths, size=size)
        arrays = {"images": images, "kept": np.array(kept)}
        save = functools.partial(write_arrays, path, arrays, manifest)
    kept = [str(p) for p in arrays["kept"]]
    skipped = sorted(set(paths) - set(kept))
    return dict(zip(kept, arrays["images"])), skipped, save


def _new_split(config, layout, classes, files, images):
    """{split: [(path, label)]} of the readable images, drawn or read off the layout;
    ConfigError for a class left with no image."""
    readable = {part: {c: [p for p in paths if p in images] for c, paths in by_class.items()}
                for part, by_class in files.items()}
    for part, by_class in readable.items():
        for c, paths in by_class.items():
            if not paths:
                where = os.path.join(config.data_dir, *([] if part == "all" else [SPLIT_FOLDERS[part]]), c)
                raise ConfigError(f"class folder {where} holds no image ({len(files[part][c])} other file(s))")
    if layout == "classes":
        return stratified_split(readable["all"], valid_size=config.valid_size, test_size=config.test_size,
                                seed=config.data_seed)
    return {split: [(p, label) for label, c in enumerate(classes) for p in readable[split][c]]
            for split in SPLIT_FOLDERS}


def read_record(config):
    """The run's split.json (written when it started training): ConfigError when missing,
    unreadable or of another image size than --image_size asks."""
    path = os.path.join(config.ckpt_dir, config.run_name, SPLIT_FILE)
    try:
        with open(path) as f:
            record = json.load(f)
        missing = [key for key in ("splits", "classes", "image_size") if key not in record]
        if missing:
            raise KeyError(missing[0])
    except FileNotFoundError:
        raise ConfigError(f"run {config.run_name} has no {path}: it holds the images the run was trained on "
                          f"and is written when a folder run starts training") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{path} is unreadable ({type(err).__name__}): the run's split is lost") from None
    if config.image_size is not None and list(config.image_size) != record["image_size"]:
        raise ConfigError(f"run {config.run_name} was trained on {record['image_size'][0]}x{record['image_size'][1]} "
                          f"images, not --image_size {' '.join(map(str, config.image_size))}")
    return record


def save_record(path, record):
    """Write a run's split record (split.json) atomically."""
    text = json.dumps(record, indent=1).encode()
    atomic_write(path, lambda f: f.write(text))


def load(config):
    """({split: (uint8 (N, C, H, W), int64 (N,))}, classes, record) of the folder --data_dir.

    A run that starts training draws (or reads off the layout) a new split; `record` is then
    what the Trainer writes to split.json. A resumed or tested run reads its split.json and
    gets record None. Nothing is written here but the decoded cache, and that only once the
    folder has passed every check."""
    layout, classes, files = scan(config.data_dir)
    every = sorted(p for by_class in files.values() for paths in by_class.values() for p in paths)
    fresh = config.is_train and not config.resume
    record = None if fresh else read_record(config)
    size = config.image_size if fresh else record.get("resize")
    images, skipped, save_cache = decoded(config, every, size)
    if fresh:
        splits = _new_split(config, layout, classes, files, images)
        C, H, W = next(iter(images.values())).shape
        record = {"format": FOLDER_FORMAT, "data_dir": os.path.abspath(config.data_dir), "layout": layout,
                  "classes": classes, "resize": size, "image_size": [H, W], "channels": C,
                  "data_seed": config.data_seed, "valid_size": config.valid_size, "test_size": config.test_size,
                  "splits": {split: {c: [p for p, label in pairs if label == i] for i, c in enumerate(classes)}
                             for split, pairs in splits.items()}}
    else:
        classes = record["classes"]
        splits = {split: [(p, classes.index(c)) for c in classes for p in by_class.get(c, [])]
                  for split, by_class in record["splits"].items()}
        lost = [p for pairs in splits.values() for p, _ in pairs if p not in images]
        if lost:
            raise ConfigError(f"{len(lost)} image(s) of run {config.run_name}'s split are missing or unreadable "
                              f"in {config.data_dir} (e.g. {lost[0]}): the run needs the folder it was trained on")
    H, W = record["image_size"]
    check_retina(config, min(H, W))
    if save_cache is not None:
        save_cache()
    if fresh and skipped:
        print(f"[*] skipped {len(skipped)} file(s) of {config.data_dir} that are not images "
              f"(e.g. {skipped[0]})", file=sys.stderr)
    out = {split: (np.stack([images[p] for p, _ in pairs]), np.array([label for _, label in pairs], np.int64))
           for split, pairs in splits.items()}
    return out, classes, (record if fresh else None)


def read_image(path, *, channels, size):
    """uint8 (C, H, W) of one image file, converted to `channels` and resized to size (H, W);
    ConfigError when it is missing or not an image."""
    if not os.path.isfile(path):
        raise ConfigError(f"--explain_image {path}: no such file")
    image = _open(path)
    if image is None:
        raise ConfigError(f"--explain_image {path}: not an image Pillow can read")
    return to_array(image, channels=channels, size=size)
