"""What every committed notebook must look like: an intro that says what you'll build / learn / need,
one `parameters` cell, outputs committed for nbval, no papermill residue, a final RESULT check."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from helpers import workbook

NOTEBOOKS = workbook.notebooks()


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_shape(notebook: Path):
    all_cells = cells(notebook)
    intro = source(all_cells[0])
    assert all_cells[0]["cell_type"] == "markdown" and intro.startswith(f"# {notebook.stem[:2]} - ")
    for heading in ("What you'll build", "What you'll learn", "What you need"):
        assert heading in intro, f"{notebook.name}: the intro must say {heading!r}"
    tagged = [cell for cell in all_cells if "parameters" in cell.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged `parameters`"
    code = [cell for cell in all_cells if cell["cell_type"] == "code"]
    assert code[0] is tagged[0], "the parameters cell is the first code cell"
    assert any(cell.get("outputs") for cell in code), "outputs are committed (nbval compares them)"
    assert all(cell.get("execution_count") for cell in code), "nbval treats a cell without a count as unrun"
    assert any("RESULT:" in source(cell) and "assert" in source(cell) for cell in code), "it ends with checks"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_no_papermill_residue(notebook: Path):
    text = notebook.read_text()
    assert '"papermill": {' not in text, "strip with `make refresh` (nbstripout --keep-output)"
    assert "PapermillExecutionError" not in text and "An Exception was encountered" not in text
    assert "injected-parameters" not in text
    for cell in cells(notebook):
        for output in cell.get("outputs", []):
            assert output.get("output_type") != "error", f"{notebook.name} was committed with an error output"


# The AWS calls each notebook must show in its own code cells (one step, one cell, the real boto3 call):
# regexes over the code. Notebooks that build resources are listed here; every one of them must end
# with a `## Cleanup` section whose code deletes what it created.
AWS_CALLS: dict[str, list[str]] = {
    "00_setup_and_iam": [
        r"\.create_role\(", r"AssumeRolePolicyDocument=", r"\.put_role_policy\(", r"\.simulate_principal_policy\(",
        r"\.delete_role\(",
    ],
    "02_ingestion_api_lambda_kinesis": [
        r"\.create_stream\(", r'get_waiter\("stream_exists"\)', r"\.update_shard_count\(", r"packaging\.package\(",
        r"packaging\.package_layer_folder\(", r"\.list_layer_versions\(", r"\.get_layer_version\(",
        r"\.publish_layer_version\(", r'"Layers": \[records_layer\]', r"\.delete_layer_version\(",
        r"\.create_function\(", r"\.update_function_configuration\(", r"\.create_rest_api\(", r"\.create_resource\(",
        r"\.put_method\(", r'type="AWS_PROXY"', r'type="AWS"', r"requestTemplates=", r"\.put_integration\(",
        r"\.put_method_response\(", r"\.put_integration_response\(", r"\.add_permission\(", r"\.create_deployment\(",
        r"\.delete_rest_api\(", r"\.delete_function\(", r"\.delete_stream\(",
    ],
    "03_stream_to_s3_raw": [
        r"\.create_bucket\(", r"\.create_queue\(", r"\.create_function\(", r'"Layers": \[built\["records_layer"\]\]',
        r"\.create_event_source_mapping\(",
        r'"BatchSize":', r'"MaximumBatchingWindowInSeconds":', r'"FunctionResponseTypes": \["ReportBatchItemFailures"\]',
        r'"BisectBatchOnFunctionError":', r'"MaximumRetryAttempts":', r'"DestinationConfig": \{"OnFailure"',
        r'StartingPosition="TRIM_HORIZON"', r"\.update_event_source_mapping\(",
        r"\.delete_event_source_mapping\(", r"\.delete_function\(", r"\.delete_queue\(", r"\.delete_bucket\(",
    ],
    "04_stream_to_dynamodb": [
        r"\.create_table\(", r'"KeySchema":', r'"GlobalSecondaryIndexes":', r"\.create_function\(",
        r'"Layers": \[built\["records_layer"\]\]',
        r"\.create_event_source_mapping\(", r"\.update_event_source_mapping\(",
        r"\.delete_event_source_mapping\(", r"\.delete_function\(", r"\.delete_table\(",
    ],
    "05_query_api": [
        r"\.put_parameter\(", r"\.create_function\(", r'"Layers": layers', r'layers=\[built\["records_layer"\]\]',
        r"\.create_rest_api\(", r"\.create_authorizer\(",
        r"\.create_resource\(", r'\.put_method\([^)]*authorizationType="CUSTOM"', r"\.put_integration\(",
        r"\.add_permission\(", r"\.create_deployment\(",
        r"\.delete_rest_api\(", r"\.delete_function\(", r"\.delete_parameter\(",
    ],
    "06_firehose_to_warehouse": [
        r'workbook\.require\("02"', r"client\.send\(", r"\.create_bucket\(", r"\.create_role\(",
        r"AssumeRolePolicyDocument=", r"\.put_role_policy\(", r"\.create_cluster\(", r"\.create_namespace\(",
        r"\.create_workgroup\(", r"\.execute_statement\(", r"\.describe_statement\(", r"\.get_statement_result\(",
        r"\.create_delivery_stream\(", r'DeliveryStreamType="KinesisStreamAsSource"', r"KinesisStreamSourceConfiguration=",
        r"RedshiftDestinationConfiguration=", r'"CopyCommand":', r'"CopyOptions":', r'"S3Configuration":',
        r'"BufferingHints":', r'"S3BackupMode":', r'"RetryOptions":', r"\.update_destination\(", r"COPY raw_sales",
        r"\.delete_delivery_stream\(", r"\.delete_cluster\(", r"\.delete_workgroup\(", r"\.delete_namespace\(",
        r"\.delete_bucket\(", r"\.delete_role_policy\(", r"\.delete_role\(",
    ],
    "07_batch_bulk_import": [
        r"\.create_role\(", r"\.put_role_policy\(", r"\.create_bucket\(", r"\.create_table\(", r"\.create_function\(", r'"Layers": \[built\["records_layer"\]\]',
        r"\.put_rule\(", r"ScheduleExpression=", r"\.put_targets\(", r"\.add_permission\(", r"\.import_table\(",
        r"\.describe_import\(", r"\.remove_targets\(", r"\.delete_rule\(", r"\.delete_function\(",
    ],
    "08_bi_dashboards": [
        r'workbook\.require\("06"', r"\.put_object\(", r"COPY raw_sales", r"\.execute_statement\(",
        r"\.get_statement_result\(", r'QUESTIONS\["customer_rfm"\] = """', r"\.delete_object\(",
    ],
    "09_telemetry_streaming_analytics": [
        r"\.create_role\(", r"\.put_role_policy\(", r"\.create_function\(", r"\.create_delivery_stream\(",
        r'\["ProcessingConfiguration"\] = ', r'"BufferingHints":', r"!\{timestamp:yyyy/MM/dd\}",
        r"\.put_bucket_notification_configuration\(", r"\.create_api\(", r"\.create_integration\(",
        r'PayloadFormatVersion="2\.0"', r"\.create_route\(", r"\.create_stage\(", r"\.add_permission\(",
        r"\.create_event_source_mapping\(", r'"TumblingWindowInSeconds":', r"\.create_topic\(",
        r'\.subscribe\([^)]*Protocol="sqs"', r'Protocol="email"', r"\.put_metric_alarm\(", r"\.put_dashboard\(",
        r"\.get_metric_widget_image\(", r"\.delete_delivery_stream\(", r"\.delete_api\(", r"\.delete_alarms\(",
        r"\.delete_dashboards\(", r"\.delete_topic\(", r"\.delete_function\(", r"\.delete_bucket\(",
    ],
    "10_lake_catalog_and_athena": [
        r"\.create_role\(", r'"Service": "glue\.amazonaws\.com"', r"\.put_role_policy\(", r"\.create_database\(",
        r"\.create_crawler\(", r'"TablePrefix":', r'"SchemaChangePolicy":', r"\.update_crawler\(", r"\.start_crawler\(",
        r"\.get_table\(", r'get_paginator\("get_partitions"\)', r"\.create_work_group\(", r'"ResultConfiguration":',
        r"\.start_query_execution\(", r"\.get_query_execution\(", r"\.get_query_results\(",
        r"year = '2011' AND month = '11'", r"format = 'PARQUET'", r"external_location = ", r"\.create_named_query\(",
        r"\.delete_named_query\(", r"\.delete_work_group\([^)]*RecursiveDeleteOption=True", r"\.delete_crawler\(",
        r"\.delete_table\(", r"\.delete_database\(", r"\.delete_bucket\(", r"\.delete_role\(",
    ],
}
# Notebooks that build nothing of their own.
BUILDS_NOTHING = {"01_dataset_and_quality", "99_teardown"}


def code_of(path: Path) -> str:
    return "\n".join(source(cell) for cell in cells(path) if cell["cell_type"] == "code")


@pytest.mark.parametrize("notebook", [path for path in NOTEBOOKS if path.stem in AWS_CALLS], ids=lambda path: path.stem)
def test_notebook_shows_its_aws_calls(notebook: Path):
    code = code_of(notebook)
    missing = [pattern for pattern in AWS_CALLS[notebook.stem] if not re.search(pattern, code)]
    assert not missing, f"{notebook.name} must show these calls in its code cells: {missing}"


@pytest.mark.parametrize("notebook", [path for path in NOTEBOOKS if path.stem not in BUILDS_NOTHING],
                         ids=lambda path: path.stem)
def test_a_notebook_that_builds_has_build_only_and_a_cleanup(notebook: Path):
    all_cells = cells(notebook)
    parameters = source(next(cell for cell in all_cells if "parameters" in cell.get("metadata", {}).get("tags", [])))
    assert re.search(r"^build_only = False\b", parameters, re.M), "a build_only parameter, off by default"
    assert re.search(r"^cleanup = False\b", parameters, re.M), "a cleanup parameter, off by default"
    headings = [i for i, cell in enumerate(all_cells)
                if cell["cell_type"] == "markdown" and source(cell).startswith("## Cleanup")]
    assert len(headings) == 1, "one `## Cleanup` section"
    after = "\n".join(source(cell) for cell in all_cells[headings[0]:] if cell["cell_type"] == "code")
    assert "if cleanup:" in after and re.search(r"\.delete_\w+\(", after), "visible delete calls under `if cleanup:`"
    code = code_of(notebook)
    assert "workbook.record(" in code and "if build_only:" in code, "it records what it built and stops on build_only"
