"""Stage 1 (EM rounds of the segmenter θ1); receives records and TileSets, parses no files."""
