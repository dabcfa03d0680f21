"""DynamoDB ImportTable from S3, performed: moto 5.2.6 stores the request but reads DynamoDB JSON only,
ignores InputFormatOptions and the client token, fails the whole import on one bad item and has no
ListImports. This executor answers ImportTable, DescribeImport and ListImports itself (see executor.py)."""
