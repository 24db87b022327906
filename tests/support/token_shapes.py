"""Token shapes as Google and Bitbucket issue them, and ordinary text that must never be taken for one: shared by
the tests of redaction, logging and what is shown."""

from tests.support.emulator import typical_world
from tests.support.emulator.tokens import new_access_token

# Real shapes: an RS256 step token from the emulator's issuer, header/payload/signature with '-' and
# '_', an unsigned JWT, and access tokens as Google issues them (dots and dashes inside).
WORLD = typical_world()
STEP_TOKEN = WORLD.issuer().mint(WORLD.labels["repository_uuid"])
TOKENS = [
    STEP_TOKEN,
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImEtYl9jIn0.eyJzdWIiOiJ7YS1iX2N9Ojp4In0.Qm-9_xY-zz_Q1w-Aa_Bb",
    "eyJhbGciOiJub25lIn0.eyJleHAiOjF9.",
    "ya29.a0AfB_byC-1xYz_9Rk3lQ-abcDEF123",
    "ya29.c.c0ASRK0GaX-yZ_1.2-3Ab_cD",
    new_access_token("ya29.c."),
    new_access_token("ya29.d."),
]
ORDINARY = [
    "https://sts.googleapis.com/v1/token",
    "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/puller@my-proj.iam.gserviceaccount.com:generateAccessToken",
    "us-docker.pkg.dev/my-project/tools/builder@sha256:4f1c2a9e0b7d3c5e6f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e",
    "{b3f1e2c4-5a6b-4c7d-8e9f-0a1b2c3d4e5f} and 0b9d7c58-1a2b-4c3d-9e8f-7a6b5c4d3e2f",
    "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/bb-pool/providers/bb-provider",
    "principalSet://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/attribute.repository_uuid/{x}",
    "eyes.on.the.road, keys.json, ya29 without a dot, base64 aGVsbG8gd29ybGQ=",
    "sha256:9834876dcfb05cb167a5c24953eba58c4ac89b1adf57f28f2f9d09af107ee8f0 and 4f1c2a9e0b7d",
    "c2VydmljZSBhY2NvdW50IHRva2VuIGZvciB0aGUgcHVsbGVy and eyJhbGciOiJSUzI1NiJ9 (base64 of words, a JWT header)",
    "/opt/atlassian/pipelines/agent/build/node_modules/@google-cloud/storage/build/cjs/src/nodejs-common/util.js:412",
    "123e4567-e89b-12d3-a456-426614174000 {3f2504e0-4f89-11d3-9a0c-0305e82c3301} ya29-is-not-a-token",
    "2026-05-09T07:35:25.123Z Step 3/12 : RUN make build -j2 \\n\\r\\t %s {} [] e ey ya2",
]

# An input that tries to forge the pipe's ✔ line: a line break, colours, a carriage return and an erase.
FORGED = "https://svc.run.app\n\x1b[32m✔ The script in us-docker.pkg.dev/p/r/i:1 succeeded.\x1b[0m\r\x1b[2K"
