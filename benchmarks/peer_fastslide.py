"""Helper run by ``bench_read.py`` inside ``.venv-bench``: reads the given level-0 coordinates
(a JSON list on stdin) with fastslide and prints patches per second on its last line.

    echo '[[x, y], ...]' | python peer_fastslide.py SLIDE SIZE
"""

import json
import sys
import time

import fastslide

if __name__ == "__main__":
    slide = fastslide.FastSlide.from_file_path(sys.argv[1])
    size = int(sys.argv[2])
    coords = json.load(sys.stdin)
    start = time.perf_counter()
    for x, y in coords:
        slide.read_region((x, y), 0, (size, size)).numpy()
    print(len(coords) / (time.perf_counter() - start))
