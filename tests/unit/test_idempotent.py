import pytest
from botocore.exceptions import ClientError

from helpers.idempotent import already_exists, exists_ok


def _error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "CreateThing")


@pytest.mark.parametrize("code", ["ResourceInUseException", "EntityAlreadyExists", "BucketAlreadyOwnedByYou",
                                  "ResourceConflictException", "ConflictException", "QueueAlreadyExists"])
def test_already_exists_is_swallowed_and_reported(code):
    with exists_ok() as outcome:
        raise _error(code)
    assert outcome.created is False and outcome.code == code
    assert already_exists(_error(code))


def test_a_new_resource_is_reported_created():
    with exists_ok() as outcome:
        pass
    assert outcome.created is True and outcome.code is None


@pytest.mark.parametrize("code", ["ThrottlingException", "AccessDenied", "ValidationException", "BucketAlreadyExists"])
def test_other_errors_raise(code):
    with pytest.raises(ClientError):
        with exists_ok():
            raise _error(code)


def test_extra_codes_and_non_aws_errors():
    with exists_ok("InvalidParameterValueException") as outcome:
        raise _error("InvalidParameterValueException")
    assert not outcome.created
    with pytest.raises(KeyError):
        with exists_ok():
            raise KeyError("x")
