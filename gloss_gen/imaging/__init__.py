"""Images for the model: bounded decoding of untrusted bytes, then open_clip's exact preprocessing.

Used alike by the server, ``vgloss classify`` and ``vgloss eval``:

- :mod:`.decode` — bytes -> RGB PIL image within :class:`ImageLimits`, or :class:`ImageError`;
- :mod:`.preprocess` — RGB image -> normalised tensor (:class:`Preprocessor`), and
  :func:`load_tensor`, the two in one call.
"""

from gloss_gen.imaging.decode import DEFAULT_FORMATS, ImageError, ImageLimits, check_image_bytes, decode_image, to_rgb
from gloss_gen.imaging.preprocess import Preprocessor, load_tensor

__all__ = [
    "DEFAULT_FORMATS",
    "ImageError",
    "ImageLimits",
    "Preprocessor",
    "check_image_bytes",
    "decode_image",
    "load_tensor",
    "to_rgb",
]
