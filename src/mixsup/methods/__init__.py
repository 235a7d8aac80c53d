"""The training methods: the modes registry (trainer, builder and scorer of each, named by
import string) and the bundle a run exports. May import ``models`` and below."""
