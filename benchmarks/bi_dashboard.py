"""The BI dashboard of notebook 08 on the full real file: one bulk COPY into the warehouse (landing
table + star schema, with notebook 06's SQL), then every question of notebook 08 (its SQL, read from
the notebook) through the `redshift-data` API, timed as a caller sees it.
Skipped when the real file is absent. Run: `python -m benchmarks --only dashboard`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from helpers.paths import PROJECT_ROOT

REAL_FILE = Path(os.environ.get("RETAIL_REAL_DATA", PROJECT_ROOT.parent / "shared/data/ecommerce/data.csv"))


def run() -> dict[str, Any]:
    if not REAL_FILE.exists():
        return {"skipped": f"the real file is not at {REAL_FILE} (set RETAIL_REAL_DATA)"}
    from helpers import bi_report, bulk_load, config, notebook_sql, resources
    from helpers import redshift_data as rd
    from localcloud import lifecycle

    with lifecycle.running(tempfile.mkdtemp(prefix="bench-bi-")) as endpoint:
        os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
        config.configure(target="local", region="us-east-1", prefix="bench")
        names = resources.names()
        config.client("redshift").create_cluster(  # notebook 06's warehouse and tables, on a cloud of its own
            ClusterIdentifier=names.warehouse_cluster, ClusterType="single-node", NodeType="ra3.xlplus", DBName="dev",
            MasterUsername="admin", MasterUserPassword="Bench-only-Passw0rd")
        config.client("s3").create_bucket(Bucket=names.staging_bucket)
        wh = rd.warehouse(names)
        built = notebook_sql.named("06")
        rd.execute_batch(wh, [built["RAW_DDL"], *built["STAR_DDL"]])
        started = time.perf_counter()
        rows = bulk_load.load_file(wh, REAL_FILE, names=names)
        load_s = time.perf_counter() - started
        _, seconds = bi_report.run_questions(wh)
    return {"rows": rows, "bulk_load_and_star_schema_s": round(load_s, 2),
            "queries": len(seconds), "queries_total_s": round(sum(seconds.values()), 2),
            "slowest_query": max(seconds, key=seconds.__getitem__), "slowest_query_s": round(max(seconds.values()), 3)}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
    sys.exit(0)
