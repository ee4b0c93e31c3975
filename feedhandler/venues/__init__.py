"""One module per venue: protocol constants and limits as data, a numba decoder, book sync."""
