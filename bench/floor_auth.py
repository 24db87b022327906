"""The floor for the auth-only benchmark: the same STS + generateAccessToken calls with the standard library
only, in a container on the same base. Reads the same variables as the pipe."""

import json
import os
import urllib.parse
import urllib.request

provider = os.environ["WORKLOAD_IDENTITY_PROVIDER"]
form = urllib.parse.urlencode({
    "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
    "audience": "//iam.googleapis.com/" + provider,
    "scope": "https://www.googleapis.com/auth/iam",
    "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
    "subject_token": os.environ["BITBUCKET_STEP_OIDC_TOKEN"],
    "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
}).encode()
with urllib.request.urlopen(urllib.request.Request(os.environ["STS_ENDPOINT"] + "/v1/token", data=form)) as response:
    federated = json.load(response)["access_token"]
body = json.dumps({"scope": ["https://www.googleapis.com/auth/cloud-platform"], "lifetime": "3600s"}).encode()
url = f"{os.environ['IAM_CREDENTIALS_ENDPOINT']}/v1/projects/-/serviceAccounts/{os.environ['SERVICE_ACCOUNT']}:generateAccessToken"
request = urllib.request.Request(url, data=body, headers={"Authorization": "Bearer " + federated, "Content-Type": "application/json"})
with urllib.request.urlopen(request) as response:
    assert json.load(response)["accessToken"]
print("floor ok")
