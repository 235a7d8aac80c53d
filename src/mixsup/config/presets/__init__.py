"""The presets (paper, small, tiny) as YAML files read by ``config``."""
