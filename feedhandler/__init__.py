"""The venue side: fixed-point books, venue adapters and decoders."""
