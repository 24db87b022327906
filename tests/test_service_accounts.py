"""pipe.service_accounts: which e-mails IAM issues, the project each names, and the resource name for IAM."""

import string

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipe import service_accounts
from tests.support.budgets import EXAMPLE_DEADLINE_MS
from tests.support.inputs import ADVERSARIAL

LIMITS = settings(max_examples=300, deadline=EXAMPLE_DEADLINE_MS)
PROJECT_ID = st.builds(lambda a, m, z: a + m + z, st.sampled_from(string.ascii_lowercase),
                       st.text(alphabet=string.ascii_lowercase + string.digits + "-", min_size=4, max_size=28),
                       st.sampled_from(string.ascii_lowercase + string.digits))
ACCOUNT_ID = PROJECT_ID  # the same rule: 6-30 characters, a letter first, no trailing hyphen


@pytest.mark.parametrize("email, project, resource", [
    ("deployer@my-project.iam.gserviceaccount.com", "my-project",
     "projects/my-project/serviceAccounts/deployer@my-project.iam.gserviceaccount.com"),
    ("my-project@appspot.gserviceaccount.com", "my-project", "projects/my-project/serviceAccounts/my-project@appspot.gserviceaccount.com"),
    ("123456789012-compute@developer.gserviceaccount.com", None,
     "projects/123456789012/serviceAccounts/123456789012-compute@developer.gserviceaccount.com"),
    # A domain-scoped project (example.com:my-project): its ID is not in the e-mail, so '-' lets Google find it.
    ("deployer@my-project.example.com.iam.gserviceaccount.com", None,
     "projects/-/serviceAccounts/deployer@my-project.example.com.iam.gserviceaccount.com"),
    ("abcdef@abcdef.iam.gserviceaccount.com", "abcdef", "projects/abcdef/serviceAccounts/abcdef@abcdef.iam.gserviceaccount.com"),
    ("a" * 30 + "@" + "b" * 30 + ".iam.gserviceaccount.com", "b" * 30, None),
])
def test_the_forms_iam_issues(email, project, resource):
    assert service_accounts.is_email(email)
    assert service_accounts.project_id(email) == project
    assert resource is None or service_accounts.resource_name(email) == resource


@pytest.mark.parametrize("text", [
    "Deployer@my-project.iam.gserviceaccount.com", "deployer@My-Project.iam.gserviceaccount.com",  # IAM writes lower case only
    "abcde@my-project.iam.gserviceaccount.com", "a" * 31 + "@my-project.iam.gserviceaccount.com",  # 6 to 30 characters
    "1deployer@my-project.iam.gserviceaccount.com", "deployer-@my-project.iam.gserviceaccount.com", "deploy_er@my-project.iam.gserviceaccount.com",
    "deployer@my-project-.iam.gserviceaccount.com", "deployer@1my-project.iam.gserviceaccount.com",
    "deployer@my-project.iam.gserviceaccount.com\n", " deployer@my-project.iam.gserviceaccount.com",
    "deployer@my-project.iam.gserviceaccount.com.evil.com", "deployer@my-project.iam.gserviceaccount.co",
    "deployer@my-project.gserviceaccount.com", "deployer@gmail.com", "my-project", "",
    "compute@developer.gserviceaccount.com", "12ab-compute@developer.gserviceaccount.com", "-compute@developer.gserviceaccount.com",
    "1@appspot.gserviceaccount.com", "projects/-/serviceAccounts/deployer@my-project.iam.gserviceaccount.com",
    "deployer@my-project.iam.gserviceaccount.com/", "deployer@@my-project.iam.gserviceaccount.com",
])
def test_other_text_is_no_service_account(text):
    assert not service_accounts.is_email(text)
    assert service_accounts.project_id(text) is None
    assert service_accounts.resource_name(text) == f"projects/-/serviceAccounts/{text}"


def test_no_email_names_no_project():
    assert service_accounts.project_id(None) is None and service_accounts.project_id("") is None


@pytest.mark.parametrize("agent", ["service-123456789012@gcp-sa-artifactregistry.iam.gserviceaccount.com",
                                   "service-123456789012@compute-system.iam.gserviceaccount.com"])
def test_a_service_agent_names_no_project_id(agent):
    assert service_accounts.is_email(agent)
    assert service_accounts.project_id(agent) is None


# --- properties -------------------------------------------------------------------------------------------------------------

@LIMITS
@given(ACCOUNT_ID, PROJECT_ID)
def test_every_user_managed_account_names_its_project(account, project):
    email = f"{account}@{project}.iam.gserviceaccount.com"
    assert service_accounts.is_email(email)
    assert service_accounts.project_id(email) == project
    assert service_accounts.resource_name(email) == f"projects/{project}/serviceAccounts/{email}"


@LIMITS
@given(st.integers(0, 10**20))
def test_every_compute_default_account_names_its_project_number(number):
    email = f"{number}-compute@developer.gserviceaccount.com"
    assert service_accounts.is_email(email) and service_accounts.project_id(email) is None
    assert service_accounts.resource_name(email) == f"projects/{number}/serviceAccounts/{email}"


FRAGMENTS = st.lists(st.sampled_from(["deployer", "@", "my-project", ".iam", ".gserviceaccount.com", "-compute", "@developer",
                                      "@appspot", "123", ".", "-", "\n", "A"]), max_size=10).map("".join)


@LIMITS
@given(st.one_of(ADVERSARIAL, FRAGMENTS))
@example("a" * 60_000 + "@" + "b" * 60_000 + ".iam.gserviceaccount.com")
@example("a-" * 150_000 + "@x")
def test_any_text_is_a_service_account_or_not_and_never_raises(text):
    is_email = service_accounts.is_email(text)
    project = service_accounts.project_id(text)
    resource = service_accounts.resource_name(text)
    assert isinstance(is_email, bool)
    assert project is None or (is_email and (f"@{project}." in text or text == f"{project}@appspot.gserviceaccount.com") and len(project) <= 30)
    assert resource.startswith("projects/") and resource.endswith(f"/serviceAccounts/{text}")
    if not is_email:
        assert project is None and resource == f"projects/-/serviceAccounts/{text}"
