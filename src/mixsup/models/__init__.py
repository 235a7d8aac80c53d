"""Networks and their builders. The only files read here are weights: ImageNet weights that a
pip package ships, and local ``*.weights`` files named in the config (``factory``); slides,
checkpoints and bundles are read elsewhere. May import ``dataset``, ``labels``, ``slides``
and below."""
