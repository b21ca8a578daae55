"""The worker VM image: build it with Nix, describe it in a manifest, publish it.

`build_image` runs `nix build` on the flake and writes the `okai.image/v1`
manifest; `plan_publish` checks a built image can be stored and booted from a
URL Fluence accepts; `publish_image` stores and registers it.
"""

from okai.image.build import (
    DEFAULT_VARIANT,
    VARIANTS,
    BuiltImage,
    Variant,
    build_image,
    default_out_dir,
    hash_file,
)
from okai.image.errors import (
    DirtyFlakeError,
    ImageRegisteredDifferently,
    ImageUrlError,
    NixCommandError,
    NixMissingError,
    NixTooOldError,
)
from okai.image.nix import MIN_NIX_VERSION, Nix
from okai.image.publish import (
    FLUENCE_EXTENSIONS,
    PublishPlan,
    PublishResult,
    check_image_url,
    plan_publish,
    publish_image,
    published_manifest,
    quilt_patch_url,
)

__all__ = [
    "DEFAULT_VARIANT",
    "FLUENCE_EXTENSIONS",
    "MIN_NIX_VERSION",
    "VARIANTS",
    "BuiltImage",
    "DirtyFlakeError",
    "ImageRegisteredDifferently",
    "ImageUrlError",
    "Nix",
    "NixCommandError",
    "NixMissingError",
    "NixTooOldError",
    "PublishPlan",
    "PublishResult",
    "Variant",
    "build_image",
    "check_image_url",
    "default_out_dir",
    "hash_file",
    "plan_publish",
    "publish_image",
    "published_manifest",
    "quilt_patch_url",
]
