"""Names and ARNs of everything the workbook builds, derived from the settings in one place.

Every notebook and the teardown use these, so a prefix change renames the whole platform and nothing
is left behind under an old name.
"""

from __future__ import annotations

from dataclasses import dataclass

from helpers import config

# The course's Lambda functions, by folder under lambdas/ (each gets its own execution role).
INGEST_API = "ingest_api"
STREAM_TO_S3 = "stream_to_s3"
STREAM_TO_DYNAMODB = "stream_to_dynamodb"
QUERY_API = "query_api"
CUSTOMER_AUTHORIZER = "customer_authorizer"
# The layers the workbook publishes, by folder under lambdas/layers/.
RECORDS_LAYER = "records"  # the record contract (package retail_records) the ingest, stream and batch functions share


@dataclass(frozen=True)
class Names:
    """Resource names for one prefix, region and account."""

    prefix: str
    region: str
    account: str

    def _name(self, *parts: str) -> str:
        return "-".join([self.prefix, *parts]).lower()

    @property
    def stream(self) -> str:
        return self._name("transactions")

    @property
    def lake_bucket(self) -> str:
        # S3 bucket names are global across all accounts: the account and region make ours unique.
        return self._name("lake", self.account, self.region)

    @property
    def table(self) -> str:
        return self._name("sales")

    def layer(self, folder: str) -> str:
        """The Lambda layer of `lambdas/layers/<folder>/` ("retail-records")."""
        return self._name(folder.replace("_", "-"))

    @property
    def quarantine_queue(self) -> str:
        return self._name("quarantine")

    @property
    def ingestion_api(self) -> str:
        return self._name("sales", "ingestion")

    @property
    def query_api(self) -> str:
        return self._name("sales", "query")

    @property
    def auth_secret_parameter(self) -> str:
        """SSM parameter holding the query API's token-signing secret."""
        return f"/{self.prefix}/query-api/auth-secret"

    # The warehouse (notebooks 06 and 08) ----------------------------------------------------
    @property
    def warehouse_cluster(self) -> str:
        """The local Redshift cluster, and on AWS the Redshift Serverless workgroup and namespace."""
        return self._name("warehouse")

    @property
    def staging_bucket(self) -> str:
        """Where Firehose stages batches (and their manifests) for Redshift COPY."""
        return self._name("staging", self.account, self.region)

    @property
    def staging_bucket_arn(self) -> str:
        return f"arn:aws:s3:::{self.staging_bucket}"

    @property
    def firehose_stream(self) -> str:
        """Firehose delivery stream: Kinesis -> the warehouse's raw landing table."""
        return self._name("to-warehouse")

    @property
    def firehose_course_stream(self) -> str:
        """Firehose delivery stream: Kinesis -> the course's table (kept to show its load errors)."""
        return self._name("to-warehouse-course")

    @property
    def firehose_role(self) -> str:
        return self._name("firehose-role")

    @property
    def warehouse_role(self) -> str:
        """The role Redshift assumes to read the staging bucket (COPY ... IAM_ROLE)."""
        return self._name("warehouse-copy-role")

    def firehose_arn(self, name: str) -> str:
        return self._arn("firehose", f"deliverystream/{name}")

    def function(self, folder: str) -> str:
        """Lambda function name for a folder under lambdas/ (`ingest_api` -> `retail-ingest-api`)."""
        return self._name(folder.replace("_", "-"))

    def role(self, folder: str) -> str:
        return self.function(folder) + "-role"

    # ARNs --------------------------------------------------------------------------------------
    def _arn(self, service: str, resource: str, *, regional: bool = True) -> str:
        region = self.region if regional else ""
        account = self.account if service != "s3" else ""
        return f"arn:aws:{service}:{region}:{account}:{resource}"

    @property
    def stream_arn(self) -> str:
        return self._arn("kinesis", f"stream/{self.stream}")

    @property
    def lake_bucket_arn(self) -> str:
        return f"arn:aws:s3:::{self.lake_bucket}"

    @property
    def table_arn(self) -> str:
        return self._arn("dynamodb", f"table/{self.table}")

    @property
    def quarantine_queue_arn(self) -> str:
        return self._arn("sqs", self.quarantine_queue)

    def log_group_arn(self, folder: str) -> str:
        return self._arn("logs", f"log-group:/aws/lambda/{self.function(folder)}")

    def role_arn(self, folder: str) -> str:
        return f"arn:aws:iam::{self.account}:role/{self.role(folder)}"


def names(settings: config.Settings | None = None, account: str | None = None) -> Names:
    """The names in force for the current settings (asks STS for the account on a real AWS target)."""
    current = settings or config.settings()
    return Names(prefix=current.prefix, region=current.region, account=account or config.account_id())
