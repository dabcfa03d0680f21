"""The target switch: local clients can only reach the local cloud; aws creates nothing until told."""

from __future__ import annotations

import pytest

from helpers import config
from helpers.resources import INGEST_API, names


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(config, "_current", None)
    yield
    config._current = None
    config._cached_client.cache_clear()
    config._cached_session.cache_clear()


def test_defaults_are_local_and_safe():
    current = config.from_environment({})
    assert current.target == "local" and current.region == "us-east-1" and current.prefix == "retail"
    assert current.endpoint_url == config.DEFAULT_LOCAL_ENDPOINT
    assert not current.allow_aws_create


def test_environment_is_read():
    current = config.from_environment(
        {"RETAIL_TARGET": "AWS", "AWS_REGION": "eu-west-1", "RETAIL_PREFIX": "shop", "RETAIL_ALLOW_AWS_CREATE": "yes",
         "AWS_ENDPOINT_URL": "http://127.0.0.1:9999"}
    )
    assert (current.target, current.region, current.prefix, current.allow_aws_create) == ("aws", "eu-west-1", "shop", True)
    assert current.endpoint_url is None, "a real-AWS target must never keep a local endpoint"


@pytest.mark.parametrize("bad", [{"RETAIL_TARGET": "azure"}, {"RETAIL_PREFIX": "9lives"}, {"RETAIL_PREFIX": "a_b"},
                                 {"RETAIL_PREFIX": "x" * 21}])
def test_bad_settings_are_refused(bad):
    with pytest.raises(config.ConfigError):
        config.from_environment(bad)


def test_local_clients_point_at_the_local_cloud_with_fake_credentials(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4999")
    config.configure(target="local")
    s3 = config.client("s3")
    assert s3.meta.endpoint_url == "http://127.0.0.1:4999"
    assert s3.meta.region_name == "us-east-1"
    assert config.session().get_credentials().access_key == "testing"
    assert config.client("s3") is s3, "clients are cached per settings"


def test_aws_target_uses_the_standard_chain_and_refuses_to_create(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    config.configure(target="aws", region="eu-west-2")
    client = config.client("kinesis")
    assert "amazonaws.com" in client.meta.endpoint_url and "eu-west-2" in client.meta.endpoint_url
    with pytest.raises(config.AwsCreateNotAllowed, match="allow_aws_create=True"):
        config.require_create_allowed("a Kinesis stream")
    config.configure(target="aws", allow_aws_create=True)
    config.require_create_allowed("a Kinesis stream")  # now allowed


def test_local_target_never_needs_permission():
    config.configure(target="local")
    config.require_create_allowed("anything")


def test_configure_ignores_none_and_rejects_unknown():
    assert config.configure(region=None).region == config.from_environment().region
    with pytest.raises(config.ConfigError, match="unknown"):
        config.configure(colour="blue")


def test_names_follow_the_prefix_and_are_aws_safe():
    config.configure(prefix="shop")
    n = names()
    assert n.stream == "shop-transactions"
    assert n.lake_bucket == "shop-lake-123456789012-us-east-1"
    assert n.function(INGEST_API) == "shop-ingest-api" and n.role(INGEST_API) == "shop-ingest-api-role"
    assert n.stream_arn == "arn:aws:kinesis:us-east-1:123456789012:stream/shop-transactions"
    assert n.lake_bucket_arn == "arn:aws:s3:::shop-lake-123456789012-us-east-1"
    assert n.log_group_arn(INGEST_API) == "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/shop-ingest-api"
    assert len(n.lake_bucket) <= 63
