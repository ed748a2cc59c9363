"""What can go wrong with a request, in domain terms; :mod:`service.http_errors` turns these into HTTP answers.

Nothing here knows about status codes, so decoding, batching and the pipeline
raise meaningful errors without depending on the web layer.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error the service reports to a client on purpose."""


class EmptyUpload(ServiceError):
    """No file part, or a body of zero bytes."""


class Unauthorized(ServiceError):
    """API keys are enabled and the request has no valid ``Authorization: Bearer <key>``."""


class UploadTooLarge(ServiceError):
    """The request body exceeds ``max_upload_bytes``."""


class HeadersTooLarge(ServiceError):
    """The request line and headers exceed :data:`service.middleware.MAX_HEADER_BYTES`."""


class UploadTimedOut(ServiceError):
    """The body did not arrive within the request timeout (a stalled or deliberately slow client)."""


class UnsupportedImage(ServiceError):
    """The bytes are not an image, or not one of the formats the service reads."""


class CorruptImage(ServiceError):
    """A readable header but undecodable (truncated, damaged) pixel data."""


class ImageTooLarge(ServiceError):
    """Width x height exceeds ``max_pixels`` (including decompression bombs)."""


class InvalidOptions(ServiceError):
    """Request options that are well-formed but not acceptable (e.g. render_size above the limit)."""


class InvalidHints(InvalidOptions):
    """Colour hints that cannot be used: malformed, outside the image, too many, or for a checkpoint without hints."""


class NotReady(ServiceError):
    """The model is still loading or warming up, or the inference worker stopped."""


class PixelBudgetFull(ServiceError):
    """The images in progress already hold ``max_pixels_in_flight`` pixels: this one would not fit now."""


class ShuttingDown(ServiceError):
    """The service is draining and accepts no new work."""


class SaliencyUnavailable(ServiceError):
    """The loaded checkpoint has no saliency branch."""


class InferenceFailed(ServiceError):
    """The batch this request ran in raised; details are in the server log under the request id."""


class ClientDisconnected(ServiceError):
    """The client went away before its result was ready; nothing is sent back."""


__all__ = [
    "ClientDisconnected",
    "CorruptImage",
    "EmptyUpload",
    "HeadersTooLarge",
    "ImageTooLarge",
    "InferenceFailed",
    "InvalidHints",
    "InvalidOptions",
    "NotReady",
    "PixelBudgetFull",
    "SaliencyUnavailable",
    "ServiceError",
    "ShuttingDown",
    "Unauthorized",
    "UnsupportedImage",
    "UploadTimedOut",
    "UploadTooLarge",
]
