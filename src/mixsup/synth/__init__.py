"""Dataset generators: procedural ``shapes`` and PatchCamelyon ``pcam`` mosaics. May
import ``labels``, ``slides`` and below; not ``dataset``."""
