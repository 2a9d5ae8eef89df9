#!/usr/bin/env python3
"""Read a table camscope wrote (triage.parquet, report.parquet) with pyarrow, as pandas,
Polars and DuckDB would, and print it as one line of JSON for tests/parquet.rs to compare
with triage.json / report.json: {"rows": N, "names": [columns in order], "schema":
{column: arrow type}, "nullable": {column: bool}, "columns": {column: [values]}}. Floats
are printed exactly (a float32 as the float64 it widens to); NaN and infinities become
null, as in camscope's JSON.

Usage: PYTHONPATH=.deps/pycheck python3 scripts/check_parquet.py FILE.parquet
"""
import json
import math
import sys

import pyarrow.parquet as pq


def clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, list):
        return [clean(x) for x in v]
    return v


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: check_parquet.py FILE.parquet")
    table = pq.read_table(sys.argv[1])
    out = {
        "rows": table.num_rows,
        "names": table.column_names,
        "schema": {f.name: str(f.type) for f in table.schema},
        "nullable": {f.name: f.nullable for f in table.schema},
        "columns": {name: [clean(v) for v in table.column(name).to_pylist()] for name in table.column_names},
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
