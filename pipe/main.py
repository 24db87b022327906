"""Entrypoint: variables → step token → Google credentials → registry auth → container → outputs.

Heavy libraries are imported only by the stage that needs them: google-auth after validation,
the Docker SDK only for pull and run.
"""

import logging
import os
import signal
import sys
from contextlib import ExitStack
from pathlib import Path

from bitbucket_pipes_toolkit import Pipe

from pipe import config, oidc, redact
from pipe.errors import PipeError

PIPE_YML = Path(__file__).resolve().parent.parent / "pipe.yml"
log = logging.getLogger("pipe")


class Stopped(BaseException):
    """SIGTERM/SIGINT: unwinds through every `finally`, so run containers are removed."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class KeylessPipe(Pipe):
    def enable_debug_log_level(self):
        # The toolkit treats any non-empty DEBUG string as true; use the pipe's boolean rule.
        try:
            debug = config.parsers.boolean("DEBUG", self.env.get("DEBUG"))
        except PipeError:
            debug = False
        logging.getLogger().setLevel(logging.DEBUG if debug else logging.INFO)

    @staticmethod
    def success(message: str, do_exit: bool = False):
        """One ✔ line: redacted, with any control character from an input escaped."""
        Pipe.success(redact.printable(message), do_exit=do_exit)

    def run(self):
        super().run()
        cfg = config.load(self.env, Path.cwd())
        for line in config.token_destination_warnings(cfg):  # before anything goes anywhere
            log.warning(line)
        if cfg.action == "doctor":
            return self._doctor(cfg)
        # setup only reads the claims, so an expired token still describes the step well enough.
        step = oidc.read(self.env, now=0 if cfg.action == "setup" else None)
        redact.add_secret(step.value)
        if cfg.action == "setup":
            from pipe import setup_plan

            print("\n".join(redact.printable(line) for line in setup_plan.render(cfg, step, cfg.restrict_to).split("\n")), flush=True)
            return 0
        log.debug(f"Step token: iss={step.claim('iss')} aud={step.audiences} lifetime={_lifetime(step)}")

        from pipe import registry

        if cfg.image:
            registry.check_allowed(cfg.image, cfg.registries)  # before any token exists to leak
        client = None
        if cfg.action in ("pull", "run"):
            from pipe import container  # the Docker SDK: only for actions that use the daemon

            client = container.connect()  # fail on a missing `services: [docker]` before minting anything

        if cfg.export_credentials:
            from pipe import export

            export.export_dir(cfg)  # a storage dir outside the clone is refused before any token exists
        http = _transport(cfg)
        for host in _registries_receiving_tokens(cfg):  # the daemon sends credentials where each registry says
            registry.check_token_service(host, cfg.registries, http)
        minted, id_token = self._authenticate(cfg, step, http)
        if cfg.action in ("pull", "run"):
            container.pull(client, cfg.image, registry.auth_config(minted.access_token), minted.principal, http.policy)
            self.success(f"Pulled {cfg.image.reference}.")
        if cfg.action == "run":
            self._run_image(cfg, step, client)
        # Only now: files written earlier would sit in the clone the run container mounts.
        if cfg.export_credentials:
            self._export(cfg, step, minted, id_token)
        return 0

    def _authenticate(self, cfg, step, http):
        from pipe import credentials  # google-auth: only once the input is valid

        who = f"as {cfg.service_account}" if cfg.service_account else "by direct federation"
        minted = credentials.mint(cfg, step, http)
        self.success(f"Authenticated to Google Cloud {who} through {cfg.provider.provider_id}.")
        id_token = credentials.id_token(cfg, step, http) if cfg.id_token_audience else None
        if id_token:
            self.success(f"Minted an ID token for audience {cfg.id_token_audience}.")
        return minted, id_token

    def _run_image(self, cfg, step, client) -> None:
        from pipe import container, export

        environment = container.run_environment(cfg.env, self.env)
        with ExitStack() as scope:  # every directory made for the container is removed on any exit, signals included
            # Files an earlier pipe exported into the clone stay out of the container's view.
            mounts = dict(scope.enter_context(container.hidden(_export_dir(cfg), cfg.clone_dir)))
            if cfg.credentials_in_container:
                user = container.image_user(client, cfg.image)
                shared, google_env = scope.enter_context(export.container_credentials(cfg, step.value, user))
                mounts.update(shared)
                environment.update(google_env)
            status = container.run(
                client, cfg.image, script=cfg.script, command=cfg.command, environment=environment,
                workdir=cfg.workdir, clone_dir=cfg.clone_dir, mounts=mounts,
                network=cfg.network, docker_host_internal=cfg.docker_host_internal,
            )
        if status != 0:
            raise PipeError(f"The script in {cfg.image.reference} exited with code {status}.", exit_code=status)
        self.success(f"The script in {cfg.image.reference} succeeded.")

    def _doctor(self, cfg) -> int:
        from pipe import doctor

        if doctor.run_doctor(cfg, self.env, _transport(cfg), out=lambda line: print(line, flush=True)):
            return 0
        raise PipeError("ACTION: doctor found problems: apply the fix after each ✖ above.")

    def _export(self, cfg, step, minted, id_token) -> None:
        from pipe import export

        directory = export.export(cfg, step.value, minted.access_token, id_token)
        self.success(f"Exported credentials to {directory} (valid while the step's OIDC token is, about an hour).")
        log.info(f"Use them in the next lines of this step with:  source {directory}/env")
        log.warning(
            f"These files are secrets: never declare {directory} as artifacts or copy it into an image; "
            f"delete it with `rm -rf {directory}` when done."
        )


def _transport(cfg: config.Config):
    from pipe import transport  # google-auth: only once the input is valid

    headers = {"X-Goog-Request-Reason": cfg.request_reason} if cfg.request_reason else {}
    policy = transport.RetryPolicy(attempts=cfg.retry_attempts, budget=cfg.retry_max_time, timeout=cfg.request_timeout)
    return transport.Transport(policy, headers=headers)


def _export_dir(cfg: config.Config) -> Path | None:
    """Where an earlier run may have exported; None when exports cannot go there (the pipe refuses to write them)."""
    from pipe import export

    try:
        return export.export_dir(cfg)
    except PipeError:
        return None


def _registries_receiving_tokens(cfg: config.Config) -> list[str]:
    """Registries whose token service is checked before a token goes to a daemon: IMAGE's for pull and run;
    for an export's docker config also every REGISTRIES host (the default hosts there are Google's own)."""
    hosts = [cfg.image.host] if cfg.image and (cfg.action in ("pull", "run") or cfg.export_credentials) else []
    if cfg.export_credentials:
        hosts += [host for host in cfg.registries if host not in hosts]
    return hosts


def _lifetime(step: oidc.StepToken) -> str:
    exp, iat = step.claims.get("exp"), step.claims.get("iat")
    return f"{exp - iat}s" if isinstance(exp, int) and isinstance(iat, int) else "unknown"


def _metadata() -> dict:
    """pipe.yml, parsed with libyaml when present (the toolkit's pure-Python load costs ~25 ms per step)."""
    import yaml

    return yaml.load(PIPE_YML.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _stop(signum, frame):
    raise Stopped(signum)


def _fail(message: str, exit_code: int) -> int:
    print(f"\x1b[31m✖ {redact.printable(message)}\x1b[0m", flush=True)
    return exit_code


def main(env: dict | None = None) -> int:
    env = dict(os.environ if env is None else env)
    redact.install()
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        pipe = KeylessPipe(
            pipe_metadata=_metadata(), schema=config.toolkit_schema(), env=env,
            validator=config.StringsValidator(), check_for_newer_version=False,
        )
        return pipe.run()
    except PipeError as error:
        return _fail(error.message, error.exit_code)
    except Stopped as stop:
        return _fail(f"Stopped by signal {signal.Signals(stop.signum).name}; cleaned up.", 128 + stop.signum)
    except Exception as error:  # a bug, not a user error: one line, the trace only under DEBUG
        log.debug("Unexpected error", exc_info=True)
        return _fail(f"Unexpected error ({type(error).__name__}): {error}. Rerun with DEBUG: 'true' and report it.", 1)


if __name__ == "__main__":
    sys.exit(main())
