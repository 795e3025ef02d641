"""Preprocessing stage: decode, geometry, hair removal, illumination, confounder inpainting."""
