# The pipe image. Legacy-builder compatible (no BuildKit features): Bitbucket's docker service and
# the local test stack both build it with plain `docker build --build-arg BASE_IMAGE=...`.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

COPY requirements.txt /opt/pipe/requirements.txt
# pip trusts the system CA store when it exists (it also holds any corporate/proxy CA baked into the base).
# Then remove what the pipe never imports, to keep every step's pull small (measured by `make bench`):
# GitPython/gitdb/smmap (only the toolkit's test helper uses them), pyasn1(-modules) (google-auth's legacy
# RSA path; it signs with cryptography), and pip/setuptools (nothing is installed at run time).
RUN python3 -m venv /opt/venv \
 && if [ -f /etc/ssl/certs/ca-certificates.crt ]; then export PIP_CERT=/etc/ssl/certs/ca-certificates.crt; fi \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -r /opt/pipe/requirements.txt \
 && /opt/venv/bin/pip uninstall -y -q GitPython gitdb smmap pyasn1 pyasn1-modules pip setuptools \
 && python3 -c "import site; open(site.getsitepackages()[0] + '/pipe.pth', 'w').write('/opt/pipe\n')"

COPY pipe /opt/pipe/pipe
COPY pipe.yml README.md LICENSE.txt /opt/pipe/
RUN python3 -m compileall -q /opt/venv /opt/pipe/pipe

# -I: never import from the working directory (the user's clone) or PYTHON* variables.
ENTRYPOINT ["python3", "-I", "-m", "pipe"]
