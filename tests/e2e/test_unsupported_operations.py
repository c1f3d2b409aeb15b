"""Operations of a served model that Gantry does not implement answer alike in every service: HTTP
400, the service's own client-error code, and a message opening with `The operation <Op> is not
supported by this endpoint.` Every model operation is called once with no members on a server of its own (some
create defaults, such as ECS's `default` cluster, that other tests must not see)."""

import botocore.config
import botocore.exceptions
import pytest
from botocore.exceptions import ClientError

from conftest import Gantry

# Each service's code for an operation it does not serve (a client error of its own model).
EXPECTED_CODE = {
    "ecs": "UnsupportedFeatureException",
    "ecr": "ValidationException",
    "logs": "InvalidOperationException",
    "elbv2": "OperationNotPermitted",
    "cloudwatch": "InvalidAction",
    "application-autoscaling": "ValidationException",
    "ec2": "UnsupportedOperation",
    "acm": "UnsupportedOperationException",
    "kms": "UnsupportedOperationException",
    "ssm": "UnsupportedOperationException",
    "codedeploy": "UnsupportedOperationException",
    "iam": "NotImplemented",
    "sts": "InvalidAction",
}

# Wordings an unserved operation must never answer with instead of the uniform one.
OTHER_WORDINGS = ("not implemented", "by gantry", "by this server")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    g = Gantry(tmp_path_factory.mktemp("unsupported") / "data").start()
    yield g
    g.stop()


def answers(client):
    """Every model operation's answer: None when it succeeded, else (status, code, message)."""
    methods = {op: method for method, op in client.meta.method_to_api_mapping.items()}
    out = {}
    for op in client.meta.service_model.operation_names:
        try:
            getattr(client, methods[op])()
            out[op] = None
        except ClientError as e:
            r = e.response
            out[op] = (r["ResponseMetadata"]["HTTPStatusCode"], r["Error"].get("Code"), r["Error"].get("Message", ""))
        except (TypeError, ValueError, botocore.exceptions.BotoCoreError):
            # botocore cannot even build the request without members (EC2's CopySnapshot needs a
            # SourceRegion for its presigned URL): nothing reached the server.
            pass
    return out


@pytest.mark.parametrize("service", sorted(EXPECTED_CODE))
def test_unserved_operations_answer_alike(server, service):
    # No client-side checks and no host prefixes, so every call reaches the server as sent.
    cfg = botocore.config.Config(parameter_validation=False, inject_host_prefix=False,
                                 retries={"max_attempts": 1})
    got = answers(server.client(service, config=cfg))
    # The one sentence opens the message; a service may add one on what it does serve.
    unserved = {op for op, a in got.items()
                if a is not None and a[2].startswith(f"The operation {op} is not supported by this endpoint.")}
    # Every one of these models has operations Gantry does not serve; they are what this checks.
    assert unserved, f"{service}: no operation answered the uniform wording"
    for op in sorted(unserved):
        assert got[op][:2] == (400, EXPECTED_CODE[service]), (service, op, got[op])
    for op, a in got.items():
        if a is None:
            continue
        assert a[0] < 500, (service, op, a)
        assert not any(w in a[2].lower() for w in OTHER_WORDINGS if "operation" in a[2].lower()), (service, op, a)
