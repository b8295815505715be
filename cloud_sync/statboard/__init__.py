"""Team statboard v1: a static page per team built from compacted sessions, published public or behind presigned links."""
