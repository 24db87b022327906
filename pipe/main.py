"""Entrypoint: variables → step token → Google credentials → registry auth → container → outputs.

One method per action, each reading top to bottom. Heavy libraries are imported only by the stage that needs them:
google-auth after validation, the Docker SDK for pull, run and the doctor, and for an export when the step has a
daemon (to remove a killed earlier run's container first).
"""

import logging
import os
import shlex
import signal
import sys
from contextlib import ExitStack
from pathlib import Path

from bitbucket_pipes_toolkit import Pipe

from pipe import clone_dirs, config, logs, oidc, parsers, redact, shown, stopping, urls
from pipe.errors import PipeError

PIPE_YML = Path(__file__).resolve().parent.parent / "pipe.yml"
log = logging.getLogger("pipe")


class KeylessPipe(Pipe):
    def enable_debug_log_level(self):
        # The toolkit treats any non-empty DEBUG string as true; use the pipe's boolean rule.
        try:
            debug = parsers.boolean("DEBUG", self.env.get("DEBUG"))
        except PipeError:
            debug = False
        logging.getLogger().setLevel(logging.DEBUG if debug else logging.INFO)

    @staticmethod
    def success(message: str, do_exit: bool = False):
        """One ✔ line: redacted, with any control character from an input escaped."""
        Pipe.success(shown.line(message), do_exit=do_exit)

    def run(self):
        super().run()
        cfg = config.load(self.env, Path.cwd())
        for line in config.token_destination_warnings(cfg):  # before anything goes anywhere
            log.warning(line)
        action = {"setup": self.setup, "doctor": self.doctor, "auth": self.authenticate, "pull": self.pull, "run": self.run_image}
        return action[cfg.action](cfg)

    # --- the read-only actions ----------------------------------------------------------------------

    def setup(self, cfg: config.Config) -> int:
        """Print the gcloud commands and Terraform for the Google side; the claims are read, an expired token is fine."""
        from pipe import setup_plan

        step = self._step_token(now=0)
        # Escaped, not redacted: the plan holds the token's claims, never the token, and a branch named like a token
        # (ya29.release) must reach gcloud and Terraform as itself.
        print("\n".join(shown.escape(line) for line in setup_plan.render(cfg, step, cfg.restrict_to).split("\n")), flush=True)
        return 0

    def doctor(self, cfg: config.Config) -> int:
        from pipe import doctor

        if doctor.run_doctor(cfg, self.env, _transport(cfg), out=lambda line: print(line, flush=True)):
            return 0
        raise PipeError("ACTION: doctor found problems: apply the fix after each ✖ above.")

    # --- the actions that act -------------------------------------------------------------------------

    def authenticate(self, cfg: config.Config) -> int:
        self._prepare(cfg)
        if cfg.export_credentials and _has_docker(self.env):  # a killed run's container would read this export
            try:
                self._remove_leftovers(cfg, self._docker())
            except PipeError as error:  # auth itself needs no daemon
                log.debug(f"No leftover containers checked: {error.message}")
        step, http = self._step_token(), _transport(cfg)
        self._check_token_services(cfg, http)
        minted, id_token = self._mint(cfg, step, http)
        self._export(cfg, step, minted, id_token)
        return 0

    def pull(self, cfg: config.Config) -> int:
        return self._with_image(cfg, run=False)

    def run_image(self, cfg: config.Config) -> int:
        return self._with_image(cfg, run=True)

    def _with_image(self, cfg: config.Config, run: bool) -> int:
        self._prepare(cfg)
        step, http = self._step_token(), _transport(cfg)
        client = self._docker()
        self._remove_leftovers(cfg, client)
        services = self._check_token_services(cfg, http)
        minted, id_token = self._mint(cfg, step, http)
        self._pull(cfg, client, services[cfg.image.host], minted, http)
        if run:
            self._run(cfg, step, client)
        self._export(cfg, step, minted, id_token)  # only now: files written earlier would sit in the clone a run mounts
        return 0

    # --- stages ---------------------------------------------------------------------------------------

    def _prepare(self, cfg: config.Config) -> None:
        """Before any token exists: what a killed run left is removed, IMAGE's registry and the export folder checked."""
        from pipe import export, registry

        clone_dirs.remove_stale(cfg.clone_dir, export.every_export_dir(cfg))
        if cfg.image:
            registry.check_allowed(cfg.image, cfg.registries)
        if cfg.export_credentials:
            export.export_dir(cfg)  # a storage dir outside the clone is refused before any token exists

    def _step_token(self, now: float | None = None) -> oidc.StepToken:
        step = oidc.read(self.env, now=now)
        redact.add_secret(step.value)
        log.debug(f"Step token: iss={step.claim('iss')} aud={step.audiences} lifetime={step.lifetime}")
        return step

    def _docker(self):
        from pipe import container  # the Docker SDK: only for actions that use the daemon

        return container.connect()  # a missing `services: [docker]` fails before anything is minted

    def _remove_leftovers(self, cfg: config.Config, client) -> None:
        from pipe import container

        container.remove_leftovers(client, cfg.clone_dir)

    def _check_token_services(self, cfg: config.Config, http) -> dict:
        """Where each registry that will get credentials sends them, checked before any token exists."""
        from pipe import registry

        hosts = registry.receiving_credentials(cfg.image, cfg.action, cfg.export_credentials, cfg.registries)
        pulled = cfg.image.host if cfg.image and cfg.action in ("pull", "run") else None
        return {host: registry.token_service(host, cfg.registries, http, pull=host == pulled) for host in hosts}

    def _mint(self, cfg: config.Config, step: oidc.StepToken, http):
        from pipe import credentials  # google-auth: only once the input is valid

        who = f"as {cfg.service_account}" if cfg.service_account else "by direct federation"
        minted = credentials.mint(cfg, step, http)
        self.success(f"Authenticated to Google Cloud {who} through {cfg.provider.provider_id}.")
        id_token = credentials.id_token(cfg, step, http) if cfg.id_token_audience else None
        if id_token:
            self.success(f"Minted an ID token for audience {cfg.id_token_audience}.")
        return minted, id_token

    def _pull(self, cfg: config.Config, client, service, minted, http) -> None:
        from pipe import container, registry

        def auth() -> dict:  # a fresh pull token for each try
            return registry.daemon_auth(registry.pull_token(cfg.image, service, minted.access_token, minted.principal, http))

        container.pull(client, cfg.image, auth, minted.principal, http.policy)
        self.success(f"Pulled {cfg.image.display}.")

    def _run(self, cfg: config.Config, step: oidc.StepToken, client) -> None:
        from pipe import container, export

        environment = container.run_environment(cfg.env, self.env)
        with ExitStack() as scope:  # every directory made for the container is removed on any exit, signals included
            # Files an earlier pipe exported into the clone (this one, or another reference of it) stay out of view.
            mounts = {}
            for exported in export.every_export_dir(cfg):
                mounts.update(scope.enter_context(container.hidden(exported, cfg.clone_dir)))
            if cfg.credentials_in_container:
                user = container.image_user(client, cfg.image)
                shared, google_env = scope.enter_context(export.container_credentials(cfg, step.value, user))
                mounts.update(shared)
                # The same files sit in the clone, which the container mounts read-write: only the read-only binds show them.
                mounts.update(scope.enter_context(container.hidden(export.run_dir(cfg), cfg.clone_dir)))
                environment.update(google_env)
            status = container.run(
                client, cfg.image, script=cfg.script, command=cfg.command, environment=environment,
                workdir=cfg.workdir, clone_dir=cfg.clone_dir, mounts=mounts,
                network=cfg.network, docker_host_internal=cfg.docker_host_internal,
            )
        if status != 0:
            raise PipeError(f"The script in {cfg.image.display} exited with code {status}.", exit_code=status)
        self.success(f"The script in {cfg.image.display} succeeded.")

    def _export(self, cfg: config.Config, step: oidc.StepToken, minted, id_token) -> None:
        if not cfg.export_credentials:
            return
        from pipe import export

        directory = export.export(cfg, step.value, minted.access_token, id_token)
        self.success(f"Exported credentials to {directory} (valid while the step's OIDC token is, about an hour).")
        log.info(f"Use them in the next lines of this step with:  source {shlex.quote(f'{directory}/env')}")
        log.warning(
            f"These files are secrets: never declare {directory} as artifacts or copy it into an image; "
            f"delete it with `rm -rf {shlex.quote(str(directory))}` when done."
        )


def _transport(cfg: config.Config):
    from pipe import retry, transport  # google-auth: only once the input is valid

    headers = {"X-Goog-Request-Reason": cfg.request_reason} if cfg.request_reason else {}
    policy = retry.RetryPolicy(attempts=cfg.retry_attempts, budget=cfg.retry_max_time, timeout=cfg.request_timeout)
    google = frozenset(urls.parse(root).netloc for root in (cfg.sts_endpoint, cfg.iam_endpoint))  # not the registries
    return transport.Transport(policy, headers=headers, header_hosts=google)


def _metadata() -> dict:
    """pipe.yml, parsed with libyaml when present (the toolkit's pure-Python load costs ~25 ms per step)."""
    import yaml

    return yaml.load(PIPE_YML.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _has_docker(env: dict) -> bool:
    """A daemon the step has (Bitbucket's `services: [docker]` sets DOCKER_HOST), without importing the Docker SDK."""
    return bool(env.get("DOCKER_HOST")) or os.path.exists("/var/run/docker.sock")


def _fail(message: str, exit_code: int) -> int:
    print(f"\x1b[31m✖ {shown.line(message)}\x1b[0m", flush=True)
    return exit_code


def main(env: dict | None = None) -> int:
    env = dict(os.environ if env is None else env)
    umask = os.umask(0o077)  # whatever the caller's umask: files and directories the pipe creates are its own
    logs.install()
    restore_signals = stopping.install()
    try:
        return _run(env)
    finally:
        restore_signals()  # for a caller that goes on (the tests call main() in-process)
        os.umask(umask)


def _run(env: dict) -> int:
    try:
        pipe = KeylessPipe(
            pipe_metadata=_metadata(), schema=config.toolkit_schema(), env=env,
            validator=config.StringsValidator(), check_for_newer_version=False,
        )
        return pipe.run()
    except PipeError as error:
        return _fail(error.message, error.exit_code)
    except stopping.Stopped as stop:
        return _fail(f"Stopped by signal {signal.Signals(stop.signum).name}; cleaned up.", 128 + stop.signum)
    except Exception as error:  # a bug, not a user error: one line, the trace only under DEBUG
        log.debug("Unexpected error", exc_info=True)
        return _fail(f"Unexpected error ({type(error).__name__}): {error}. Rerun with DEBUG: 'true' and report it.", 1)


if __name__ == "__main__":
    sys.exit(main())
