"""The data layer, in the style of pooch: environment (`paths`), manifests, downloads (`download`), image
files (`images`) and datasets (`dataset`). Import from here; the submodules are the implementation."""

from bench.data.dataset import LAYOUTS, SAMPLE_FILES, Dataset, open_dataset
from bench.data.download import OFFLINE_FIX, fetch, retrieve
from bench.data.images import (
    IMAGE_SUFFIXES,
    MAX_PIXELS,
    DecodedImage,
    HRImage,
    ImageProblem,
    Sample,
    atomic_write,
    atomic_write_png,
    decode_image,
    is_image_file,
    load_rgb,
    make_lr,
    max_pixels,
    modcrop,
    pixels_sha256,
    read_image_file,
    sha256_file,
)
from bench.data.manifests import MANIFEST_DIR, canonical_name, dataset_manifests, list_datasets
from bench.data.paths import cache_dir, data_paths, offline, weights_paths

__all__ = [
    "Dataset",
    "HRImage",
    "Sample",
    "ImageProblem",
    "DecodedImage",
    "open_dataset",
    "list_datasets",
    "dataset_manifests",
    "canonical_name",
    "fetch",
    "retrieve",
    "load_rgb",
    "decode_image",
    "read_image_file",
    "max_pixels",
    "modcrop",
    "make_lr",
    "atomic_write",
    "atomic_write_png",
    "is_image_file",
    "sha256_file",
    "pixels_sha256",
    "cache_dir",
    "data_paths",
    "weights_paths",
    "offline",
    "MANIFEST_DIR",
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "SAMPLE_FILES",
    "LAYOUTS",
    "OFFLINE_FIX",
]
