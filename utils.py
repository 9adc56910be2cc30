"""Seeding, RNG state, atomic checkpoint I/O and checks, checksummed array caches, the
per-glimpse meter, logging helpers."""

import hashlib
import json
import os
import random
import tempfile
import traceback

import numpy as np
import torch

from arguments import ConfigError
from faults import Stopped


def seed_everything(seed):
    """The one seeding block: Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def rng_state(*generators):
    """Every RNG state a resumed run needs, as plain tensors/ints (loadable with weights_only)."""
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generators": [g.get_state() for g in generators],
    }


def set_rng_state(state, *generators):
    """Inverse of `rng_state`."""
    version, items, gauss = state["python"]
    random.setstate((version, tuple(items), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    for g, s in zip(generators, state["generators"]):
        g.set_state(s.cpu())


def atomic_write(path, write):
    """write(file object) into a temp file in path's folder, then os.replace: never half a
    file. An OSError (a full disk, a read-only folder) removes the temp file, leaves any
    previous file at path as it was, and becomes a faults.Stopped naming path."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp, f = None, None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=os.path.splitext(path)[1])
        with os.fdopen(fd, "wb") as raw:
            f = _WriteRecorder(raw)
            try:
                write(f)
            except BaseException as err:
                # Let the writer's own objects (numpy's ZipFile) go while the file is open.
                traceback.clear_frames(err.__traceback__)
                raise
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; give it an ordinary file's mode
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        # torch.save turns the OSError of a write into a RuntimeError: report the OSError.
        err = f.error if f is not None and f.error is not None else err
        if isinstance(err, OSError):
            kept = "the previous file is unchanged" if os.path.exists(path) else "nothing was written"
            raise Stopped(f"cannot write {path} ({err.strerror or type(err).__name__}): {kept}") from None
        raise


def array_bytes(array):
    """The array's bytes as a flat uint8 view (no copy when contiguous; also for empty arrays)."""
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8)


def _sha256(array):
    return hashlib.sha256(array_bytes(array)).hexdigest()


def write_arrays(path, arrays, manifest):
    """{name: array} as one uncompressed .npz (fast to load), then the manifest (.json beside
    it) with a SHA-256 per array. The manifest is written last, so a crash in between leaves
    checksums that do not match and the next reader rebuilds."""
    manifest = dict(manifest, arrays={key: {"shape": list(a.shape), "dtype": str(a.dtype), "sha256": _sha256(a)}
                                      for key, a in arrays.items()})
    atomic_write(path, lambda f: np.savez(f, **arrays))
    text = json.dumps(manifest, indent=1, sort_keys=True).encode()
    atomic_write(os.path.splitext(path)[0] + ".json", lambda f: f.write(text))


def read_arrays(path, manifest, expected):
    """(arrays, None) when the `write_arrays` cache at path holds exactly the names `expected`,
    intact, and was made with exactly `manifest`; else (None, why) -- why is None when there
    is simply no cache."""
    json_path = os.path.splitext(path)[0] + ".json"
    if not os.path.exists(path) and not os.path.exists(json_path):
        return None, None
    try:
        with open(json_path, "rb") as f:
            stored = json.loads(f.read())
        recorded = stored.pop("arrays")
    except FileNotFoundError:
        return None, "its manifest is missing"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        return None, f"its manifest is unreadable ({type(err).__name__})"
    if stored != manifest:
        changed = sorted(key for key in set(stored) | set(manifest) if stored.get(key) != manifest.get(key))
        return None, f"it was made with other settings ({', '.join(changed)})"
    if set(recorded) != set(expected):
        return None, "its manifest lists other arrays"
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            for key in sorted(expected):
                a = npz[key]
                info = recorded[key]
                if list(a.shape) != info["shape"] or str(a.dtype) != info["dtype"] or _sha256(a) != info["sha256"]:
                    return None, f"{key} does not match its SHA-256 checksum"
                arrays[key] = a
    except Exception as err:  # zipfile/numpy raise many types for a damaged file
        return None, f"it is corrupt or truncated ({type(err).__name__})"
    return arrays, None


class _WriteRecorder:
    """A file object that remembers the OSError its write raised."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data):
        if self.error is not None:  # a writer cleaning up after the failure: nothing to keep
            return len(data)
        try:
            return self.f.write(data)
        except OSError as err:
            self.error = err
            raise

    def __getattr__(self, name):
        return getattr(self.f, name)


def atomic_save(obj, path):
    """torch.save through `atomic_write`."""
    atomic_write(path, lambda f: torch.save(obj, f))


def first_line(err, limit=200):
    """The first line of an exception's message, so that an error stays one line."""
    return (str(err).strip().splitlines() or [""])[0][:limit]


def load_checkpoint(path, *, kind, version):
    """torch.load of a dict saved with {"format": version}, onto the CPU: load_state_dict then
    copies weights and optimizer state to the model's device, while the RNG states stay on
    the CPU where torch.set_rng_state wants them. A missing, unreadable or foreign file is a
    ConfigError."""
    if not os.path.isfile(path):
        raise ConfigError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file
        raise ConfigError(f"checkpoint {path} is corrupt or unreadable ({type(err).__name__}: {first_line(err)})")
    if not isinstance(state, dict) or state.get("format") != version:
        raise ConfigError(f"checkpoint {path} is not a {kind} checkpoint of format {version}")
    return state


def check_matches(what, saved, wanted, hints=None):
    """Raise a ConfigError naming every key of `wanted` whose value differs in `saved`, each
    followed by hints[key](saved) (a string from the saved settings) where `hints` has one."""
    hints = hints or {}
    differ = [f"{k}={saved.get(k)!r} in the checkpoint but {v!r} here" + (hints[k](saved) if k in hints else "")
              for k, v in wanted.items() if saved.get(k) != v]
    if differ:
        raise ConfigError(f"{what}: " + "; ".join(differ))


def precision_context(precision, device):
    """The autocast context of --precision: bf16 autocast on `device`'s type, or nothing for fp32."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


class AverageMeter:
    """Running mean of a scalar over a number of items."""

    def __init__(self):
        self.sum, self.count = 0.0, 0

    def update(self, value, n=1):
        self.sum += float(value) * n
        self.count += n

    @property
    def avg(self):
        return self.sum / max(self.count, 1)


class GlimpseMeter:
    """Mean and standard error over images of per-glimpse quantities, by name.

    `update(name=values)` takes (B, T) tensors, one row per image; they are summed over the
    batch where they live and only the (T,) sums and sums of squares, float64, go to the
    CPU. mean_t = sum_b v_bt / n, se_t = sqrt(var_t / n) with the unbiased variance over the
    n images.
    """

    def __init__(self):
        self.sums, self.squares, self.counts = {}, {}, {}

    def update(self, **values):
        for name, v in values.items():
            v = v.detach().double()  # (B, T)
            self.sums[name] = self.sums.get(name, 0) + v.sum(0).cpu()
            self.squares[name] = self.squares.get(name, 0) + (v * v).sum(0).cpu()
            self.counts[name] = self.counts.get(name, 0) + v.shape[0]

    def combine(self, total):
        """Replace every sum, sum of squares and count by total(it): with
        distributed.sum_over_ranks, the meter of the whole split a distributed run evaluated."""
        for name in self.sums:
            packed = torch.stack([self.sums[name], self.squares[name],
                                  torch.full_like(self.sums[name], self.counts[name])])
            self.sums[name], self.squares[name], counts = total(packed)
            self.counts[name] = int(counts[0])

    def mean(self, name):
        """(T,) mean over the images seen, as a list."""
        return (self.sums[name] / max(self.counts[name], 1)).tolist()

    def se(self, name):
        """(T,) standard error of the mean, as a list (0 for fewer than two images)."""
        n = self.counts[name]
        mean = self.sums[name] / max(n, 1)
        var = (self.squares[name] / max(n, 1) - mean ** 2).clamp_min(0) * n / max(n - 1, 1)
        return (var / max(n, 1)).sqrt().tolist()

    def means(self):
        return {name: self.mean(name) for name in self.sums}


def log_scalars(writer, prefix, metrics, step):
    """TensorBoard scalars as prefix/name; per-glimpse lists (names ending in _t) as
    prefix/name/glimpse_t. A "count" entry is not a scalar to plot."""
    for key, value in metrics.items():
        if isinstance(value, list):
            for t, v in enumerate(value, 1):
                writer.add_scalar(f"{prefix}/{key[:-2]}/glimpse_{t}", v, step)
        elif key != "count":
            writer.add_scalar(f"{prefix}/{key}", value, step)


def glimpse_table(columns, *, markdown=False):
    """One row per glimpse t: columns = {header: (values (T,), format spec)}, e.g.
    {"accuracy": (acc, ".2%")}. A value may be a string (printed as is). Text is aligned;
    markdown gives a `| t | ... |` table."""
    heads = ["t", *columns]
    T = len(next(iter(columns.values()))[0])
    rows = [[str(t + 1)] + [v[t] if isinstance(v[t], str) else format(v[t], spec)
                            for v, spec in columns.values()] for t in range(T)]
    if markdown:
        return "\n".join(["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
                         + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in [heads, *rows])
