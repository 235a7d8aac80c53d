"""Dataset generators: procedural ``shapes`` and PatchCamelyon ``pcam`` mosaics."""
