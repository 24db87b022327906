"""The pipe's own credential configurations, in the `external_account` format gcloud and Google's
client libraries read (what `gcloud iam workload-identity-pools create-cred-config` writes)."""


def render(cfg, token_file: str) -> dict:
    """Our credential configuration, file-sourced from the step token, refreshable while that token lives.

    With DELEGATES the external account becomes the source of an `impersonated_service_account`
    config, the only format that carries a delegation chain (google-auth and gcloud read both).
    """
    external = {
        "universe_domain": cfg.universe_domain,
        "type": "external_account",
        "audience": cfg.provider.audience,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": cfg.token_url,
        "credential_source": {"file": token_file, "format": {"type": "text"}},
    }
    if cfg.service_account is None:
        external["token_info_url"] = f"{cfg.sts_endpoint}/v1/introspect"
        return external
    impersonation_url = cfg.iam_url(cfg.service_account, "generateAccessToken")
    if not cfg.delegates:
        external["service_account_impersonation_url"] = impersonation_url
        if cfg.lifetime != 3600:
            external["service_account_impersonation"] = {"token_lifetime_seconds": cfg.lifetime}
        return external
    return {
        "type": "impersonated_service_account",
        "service_account_impersonation_url": impersonation_url,
        "delegates": [f"projects/-/serviceAccounts/{d}" for d in cfg.delegates],
        "source_credentials": external,
    }
