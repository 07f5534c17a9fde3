"""The pandas side of bench/tabular-ingest: pd.read_csv + df.describe(include='all') on the CSV Gantry ingests.

    python bench/pandas/ingest.py FILE

Prints one JSON line: rows, bytes, wall seconds (read, describe, total), CPU seconds and peak RSS of this process
(ru_maxrss, KiB on Linux) with the RSS after `import pandas` for reference. Run in a fresh process per file, so the
peak is that file's.
"""

import json
import os
import resource
import sys
import time

import pandas as pd


def rss_kib() -> int:
    # Current resident set, from /proc (Linux): the baseline after imports, before the file is read.
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') // 1024


def main() -> None:
    path = sys.argv[1]
    baseline = rss_kib()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    df = pd.read_csv(path)
    t1 = time.perf_counter()
    summary = df.describe(include='all')
    t2 = time.perf_counter()
    cpu = time.process_time() - cpu0
    # Touch the result, so nothing lazy is left out of the timing.
    assert summary.shape[1] == df.shape[1], summary.shape
    print(
        json.dumps(
            {
                'rows': int(len(df)),
                'columns': int(df.shape[1]),
                'bytes': os.path.getsize(path),
                'readSeconds': t1 - t0,
                'describeSeconds': t2 - t1,
                'seconds': t2 - t0,
                'cpuSeconds': cpu,
                'baselineRssKiB': baseline,
                'peakRssKiB': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                'version': pd.__version__,
            }
        )
    )


if __name__ == '__main__':
    main()
