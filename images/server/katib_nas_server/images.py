"""An uploaded picture of a digit turned into one model sample."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from .protocol import BadInput

FORMATS = ("PNG", "JPEG")  # what the page and the docs promise; fewer decoders, less attack surface


def image_to_sample(data: bytes, sample_shape: tuple[int, int, int], max_pixels: int) -> np.ndarray:
    """Grayscale (or RGB for 3-channel models), resized to the model's H x W, scaled to [0, 1] with the
    strokes bright on a dark ground, as the training data is: a dark-on-light scan is inverted.
    Blocking (Pillow lets other threads run while it decodes): the server runs it in a worker thread."""
    channels, height, width = sample_shape
    mode = "RGB" if channels == 3 else "L"
    if not data:
        raise BadInput("the uploaded file is empty; send a PNG or JPEG picture of a digit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as image:
                # A baseline JPEG decodes at 1/2, 1/4 or 1/8 scale when that still covers the model's
                # input: a phone photo costs a fraction of its full size. A progressive one does not:
                # libjpeg keeps every coefficient of every colour component at full size, so those count.
                (full_w, full_h), components = image.size, len(image.getbands())
                image.draft(mode, (width, height))
                if image.info.get("progressive") and full_w * full_h * components > max_pixels:
                    raise BadInput(
                        f"the picture is a progressive JPEG of {full_w}x{full_h} pixels in {components} colour "
                        f"components, which decodes at full size; send at most {max_pixels} pixels across its "
                        "components (MAX_IMAGE_PIXELS), or a baseline JPEG or PNG"
                    )
                if image.width * image.height > max_pixels:
                    raise BadInput(
                        f"the picture has {image.width}x{image.height} pixels; send at most {max_pixels} "
                        "(MAX_IMAGE_PIXELS)"
                    )
                image.load()
                picture = image.convert(mode)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadInput(f"the picture is too large to decode safely; send at most {max_pixels} pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise BadInput("the uploaded file is not a PNG or JPEG picture Pillow can read; send a PNG or JPEG") from None
    picture = picture.resize(
        (width, height), Image.Resampling.BOX if picture.width >= width else Image.Resampling.BILINEAR
    )
    pixels = np.asarray(picture, dtype=np.float32) / 255.0
    if pixels.mean() > 0.5:  # dark ink on light paper
        pixels = 1.0 - pixels
    pixels = pixels.reshape(height, width, channels).transpose(2, 0, 1)
    return pixels.reshape(1, channels, height, width)
