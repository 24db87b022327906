"""The pipe's own credential configurations, in the `external_account` format gcloud and Google's
client libraries read (what `gcloud iam workload-identity-pools create-cred-config` writes), and the
variables that point each client at the one it can refresh with."""


def federated(cfg, token_file: str) -> dict:
    """Direct federation, file-sourced from the step token: byte-for-byte gcloud's output without --service-account."""
    return {
        "universe_domain": cfg.universe_domain,
        "type": "external_account",
        "audience": cfg.provider.audience,
        "subject_token_type": cfg.subject_token_type,
        "token_url": cfg.token_url,
        "credential_source": {"file": token_file, "format": {"type": "text"}},
        "token_info_url": f"{cfg.sts_endpoint}/v1/introspect",
    }


def render(cfg, token_file: str) -> dict:
    """Our credential configuration, refreshable while the step token lives.

    With DELEGATES the federated config becomes the source of an `impersonated_service_account` config,
    the only format that carries a delegation chain. Node's google-auth-library reads it but takes the IAM
    endpoint from an `endpoint` key (it ignores the URL's host); gcloud and google-auth 2.63 refuse it.
    """
    external = federated(cfg, token_file)
    if cfg.service_account is None:
        return external
    impersonation_url = cfg.iam_url(cfg.service_account, "generateAccessToken")
    if not cfg.delegates:
        del external["token_info_url"]  # gcloud writes it only without a service account
        external["service_account_impersonation_url"] = impersonation_url
        if cfg.lifetime != 3600:
            external["service_account_impersonation"] = {"token_lifetime_seconds": cfg.lifetime}
        return external
    return {
        "type": "impersonated_service_account",
        "service_account_impersonation_url": impersonation_url,
        "delegates": [f"projects/-/serviceAccounts/{d}" for d in cfg.delegates],
        "source_credentials": external,
        "endpoint": cfg.iam_endpoint,
    }


def files(cfg, token_file: str) -> dict[str, dict]:
    """The credential files to write: with DELEGATES also the chain's federated source, for gcloud."""
    written = {"credentials.json": render(cfg, token_file)}
    if cfg.delegates:
        written["federated.json"] = federated(cfg, token_file)
    return written


def variables(cfg, directory: str) -> dict[str, str]:
    """What points client libraries (Application Default Credentials) and gcloud at the files in `directory`.

    gcloud refuses a chain in a credential file, but chains its own impersonation on a federated one."""
    found = {
        "GOOGLE_APPLICATION_CREDENTIALS": f"{directory}/credentials.json",
        "CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE": f"{directory}/credentials.json",
    }
    if cfg.delegates:
        found.update(
            CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE=f"{directory}/federated.json",
            CLOUDSDK_AUTH_IMPERSONATE_SERVICE_ACCOUNT=",".join([*cfg.delegates, cfg.service_account]),
            CLOUDSDK_API_ENDPOINT_OVERRIDES_IAMCREDENTIALS=f"{cfg.iam_endpoint}/",
        )
    return found
