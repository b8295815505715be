"""Dashboard pages: each module lays out one page and binds it to the LiveState."""
