"""Run one SQL statement on wardflow's ClickHouse (chdb path or CLICKHOUSE_URL) and print it."""

from __future__ import annotations

import argparse

from schemas.settings import Settings
from sinks import clickhouse


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("sql")
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    client = clickhouse.connect(Settings.resolve(a).clickhouse_url)
    r = client.query(a.sql)
    widths = [
        max(len(str(c)), *(len(str(row[i])) for row in r.result_rows))
        if r.result_rows
        else len(str(c))
        for i, c in enumerate(r.column_names)
    ]
    print("  ".join(str(c).ljust(w) for c, w in zip(r.column_names, widths, strict=True)))
    for row in r.result_rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
