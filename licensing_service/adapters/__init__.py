"""I/O at the edges: storage, clocks, email delivery."""
