"""What training needs: stage 1 (EM rounds of the segmenter θ1), stage 2, the MIL baselines,
the fit loop and preflight; receives records and TileSets, parses no files. May import
``evaluate`` and every layer below it; never ``predict``."""
