"""HTTP edge: routes, wire rendering, error mapping, metrics."""
