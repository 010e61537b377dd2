"""Images for people: thumbnails and previews rendered from stored DICOM bytes."""

from archive.render.image import PREVIEW_SIZE, THUMBNAIL_SIZE, icon_png, render_png

__all__ = ["PREVIEW_SIZE", "THUMBNAIL_SIZE", "icon_png", "render_png"]
