"""What Bitbucket Pipelines gives a step, by name: the documented default variables the run container receives, and
the step's credentials, which it never does.

Forwarding is by name, never by prefix: a variable the user passes to the pipe with a BITBUCKET_ name (an app
password, an access token) is theirs, and reaches the image only through ENV."""

# Bitbucket's documented default variables ("Variables and secrets"), less the paths of things the run container
# cannot see (the SSH key, the output-variables file, the pipes' storage dirs) and the step's credentials.
FORWARDED = frozenset({
    "CI",
    "BITBUCKET_BOOKMARK",
    "BITBUCKET_BRANCH",
    "BITBUCKET_BUILD_NUMBER",
    "BITBUCKET_CLONE_DIR",
    "BITBUCKET_COMMIT",
    "BITBUCKET_DEPLOYMENT_ENVIRONMENT",
    "BITBUCKET_DEPLOYMENT_ENVIRONMENT_UUID",
    "BITBUCKET_DOCKER_HOST_INTERNAL",
    "BITBUCKET_EXIT_CODE",
    "BITBUCKET_GIT_HTTP_ORIGIN",
    "BITBUCKET_GIT_SSH_ORIGIN",
    "BITBUCKET_PARALLEL_STEP",
    "BITBUCKET_PARALLEL_STEP_COUNT",
    "BITBUCKET_PIPELINE_UUID",
    "BITBUCKET_PR_DESTINATION_BRANCH",
    "BITBUCKET_PR_DESTINATION_COMMIT",
    "BITBUCKET_PR_ID",
    "BITBUCKET_PROJECT_KEY",
    "BITBUCKET_PROJECT_UUID",
    "BITBUCKET_REPO_FULL_NAME",
    "BITBUCKET_REPO_IS_PRIVATE",
    "BITBUCKET_REPO_OWNER",
    "BITBUCKET_REPO_OWNER_UUID",
    "BITBUCKET_REPO_SLUG",
    "BITBUCKET_REPO_UUID",
    "BITBUCKET_STEP_RUN_NUMBER",
    "BITBUCKET_STEP_TRIGGERER_UUID",
    "BITBUCKET_STEP_UUID",
    "BITBUCKET_TAG",
    "BITBUCKET_WORKSPACE",
    "BITBUCKET_WORKSPACE_UUID",
})
# The step's credentials (and the pipe's OIDC_TOKEN, which holds one): never forwarded, not even through ENV.
CREDENTIALS = frozenset({"BITBUCKET_STEP_OIDC_TOKEN", "OIDC_TOKEN", "PIPELINES_JWT_TOKEN"})


def forwarded(environ: dict) -> dict[str, str]:
    """The step's documented variables present in `environ`, for the run container."""
    return {name: value for name, value in environ.items() if name in FORWARDED}
