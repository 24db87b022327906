"""pipe.bitbucket: the run container receives Bitbucket's documented default variables by name, never a credential, and
never a variable merely because its name starts with BITBUCKET_."""

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipe import bitbucket
from pipe.bitbucket import CREDENTIALS, FORWARDED
from tests.support.budgets import EXAMPLE_DEADLINE_MS

# What Bitbucket passes a pipe container (pipeline-runner's reconstruction, bitbucket-pipes.md §5), and the other defaults.
PIPE_CONTAINER_ENV = {
    "BITBUCKET_STEP_TRIGGERER_UUID": "{a1}", "BITBUCKET_REPO_FULL_NAME": "acme/app", "BITBUCKET_GIT_HTTP_ORIGIN": "http://bitbucket.org/acme/app",
    "BITBUCKET_REPO_SLUG": "app", "BITBUCKET_PROJECT_UUID": "{e291}", "CI": "true", "BITBUCKET_REPO_OWNER": "acme",
    "BITBUCKET_REPO_IS_PRIVATE": "true", "BITBUCKET_WORKSPACE": "acme", "BITBUCKET_REPO_OWNER_UUID": "{b2}",
    "BITBUCKET_STEP_RUN_NUMBER": "1", "BITBUCKET_BUILD_NUMBER": "502", "BITBUCKET_BRANCH": "main",
    "BITBUCKET_GIT_SSH_ORIGIN": "git@bitbucket.org:acme/app.git", "BITBUCKET_PIPELINE_UUID": "{c3}", "BITBUCKET_COMMIT": "4f1c2a9e",
    "BITBUCKET_REPO_UUID": "{d4}", "BITBUCKET_CLONE_DIR": "/opt/atlassian/pipelines/agent/build", "BITBUCKET_PROJECT_KEY": "ACME",
    "BITBUCKET_STEP_UUID": "{e5}", "BITBUCKET_DOCKER_HOST_INTERNAL": "10.39.202.217",
    "BITBUCKET_TAG": "v1", "BITBUCKET_PR_ID": "7", "BITBUCKET_PR_DESTINATION_BRANCH": "main", "BITBUCKET_PR_DESTINATION_COMMIT": "0b7d",
    "BITBUCKET_PARALLEL_STEP": "0", "BITBUCKET_PARALLEL_STEP_COUNT": "2", "BITBUCKET_EXIT_CODE": "0",
    "BITBUCKET_DEPLOYMENT_ENVIRONMENT": "production", "BITBUCKET_DEPLOYMENT_ENVIRONMENT_UUID": "{f6}", "BITBUCKET_WORKSPACE_UUID": "{a7}",
    "BITBUCKET_BOOKMARK": "",
}
# In the pipe container, but not for the run container: credentials, paths it cannot see, the pipe's own docker host.
NOT_FORWARDED = {
    "BITBUCKET_STEP_OIDC_TOKEN": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "OIDC_TOKEN": "eyJ.eyJ.sig",
    "PIPELINES_JWT_TOKEN": "eyJ.eyJ.sig2", "BITBUCKET_SSH_KEY_FILE": "/opt/atlassian/pipelines/agent/ssh/id_rsa",
    "BITBUCKET_PIPELINES_VARIABLES_PATH": "/opt/atlassian/pipelines/agent/build/.bitbucket/pipelines/variables",
    "BITBUCKET_PIPE_STORAGE_DIR": "/opt/atlassian/pipelines/agent/build/.bitbucket/pipelines/generated/pipeline/pipes/acme/pipe",
    "BITBUCKET_PIPE_SHARED_STORAGE_DIR": "/opt/atlassian/pipelines/agent/build/.bitbucket/pipelines/generated/pipeline/pipes",
    "DOCKER_HOST": "tcp://host.docker.internal:2375", "HOME": "/root", "PATH": "/usr/bin",
    # A user's own variables passed to the pipe with BITBUCKET_ names: theirs, reaching the image only through ENV.
    "BITBUCKET_APP_PASSWORD": "app-password", "BITBUCKET_ACCESS_TOKEN": "ATCTT3xFfGN0", "BITBUCKET_USERNAME": "deployer",
    "BITBUCKET_API_TOKEN": "token", "BITBUCKET_BRANCH_EXTRA": "x",
    # Pipe variables.
    "WORKLOAD_IDENTITY_PROVIDER": "projects/1/locations/global/workloadIdentityPools/p/providers/q", "SCRIPT": "make test",
    # Names differ in case from Bitbucket's: not the same variable.
    "bitbucket_branch": "main", "Ci": "true", "ci": "true",
}


def test_the_documented_variables_are_forwarded_with_their_values():
    assert bitbucket.forwarded(PIPE_CONTAINER_ENV) == PIPE_CONTAINER_ENV


@pytest.mark.parametrize("name", sorted(NOT_FORWARDED))
def test_credentials_paths_and_other_variables_are_not(name):
    environ = PIPE_CONTAINER_ENV | {name: NOT_FORWARDED[name]}
    assert bitbucket.forwarded(environ) == PIPE_CONTAINER_ENV


def test_credentials_are_never_in_the_forwarded_set():
    assert not FORWARDED & CREDENTIALS
    assert CREDENTIALS == {"BITBUCKET_STEP_OIDC_TOKEN", "OIDC_TOKEN", "PIPELINES_JWT_TOKEN"}
    for name in FORWARDED:
        assert name == "CI" or name.startswith("BITBUCKET_")
        assert not any(word in name for word in ("TOKEN", "PASSWORD", "SECRET", "KEY_FILE", "_PATH", "STORAGE_DIR")), name


def test_the_input_is_not_changed():
    environ = dict(PIPE_CONTAINER_ENV, **NOT_FORWARDED)
    before = dict(environ)
    result = bitbucket.forwarded(environ)
    assert environ == before and result is not environ


NAMES = st.one_of(st.sampled_from(sorted(FORWARDED | CREDENTIALS | set(NOT_FORWARDED))),
                  st.text(alphabet=string.ascii_uppercase + "_", max_size=20).map("BITBUCKET_".__add__), st.text(max_size=10))


@settings(max_examples=300, deadline=EXAMPLE_DEADLINE_MS)
@given(st.dictionaries(NAMES, st.text(max_size=20), max_size=20))
def test_forwarded_is_exactly_the_documented_names_present(environ):
    result = bitbucket.forwarded(environ)
    assert result == {name: value for name, value in environ.items() if name in FORWARDED}
    assert not set(result) & CREDENTIALS
