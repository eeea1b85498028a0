"""DataFrame -> DataFrame feature preparation: read, aggregate, clean, scale, assemble."""
