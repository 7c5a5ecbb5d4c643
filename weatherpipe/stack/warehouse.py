"""PostgreSQL: the configured server, or a private one from the PyPI package ``pgserver``."""

from __future__ import annotations

import logging

from weatherpipe import db
from weatherpipe.errors import ServiceUnavailable
from weatherpipe.private_pg import PrivatePostgres
from weatherpipe.proc import ServiceStatus
from weatherpipe.stack.base import Service

log = logging.getLogger(__name__)


class PostgresService(Service):
    """The configured server when it answers; otherwise a private server from the PyPI package ``pgserver``."""

    name = "postgres"
    marker = "postgres"

    def port(self) -> tuple[str, int]:
        return self.settings.postgres.host, self.settings.postgres.port

    @property
    def url(self) -> str:  # type: ignore[override]
        return self.settings.postgres.admin.safe_url()

    def healthy(self) -> bool:
        return db.ping(self.settings.postgres.admin, self.settings.postgres.maintenance_database)

    def after_start(self) -> None:
        db.provision(self.settings)

    def up(self) -> ServiceStatus:
        mode = self.settings.stack.manage_postgres
        if mode != "always" and self.healthy():
            self.after_start()
            return ServiceStatus(self.name, "external", self.url, self.pid())
        if mode == "never":
            raise ServiceUnavailable(
                f"PostgreSQL is not reachable at {self.url}",
                hint="start your server, fix WEATHERPIPE_POSTGRES__*, or set "
                "WEATHERPIPE_STACK__MANAGE_POSTGRES=auto to run a private one",
            )
        return PrivatePostgres(self.settings).up()

    def down(self) -> ServiceStatus:
        private = PrivatePostgres(self.settings)
        if private.running():
            return private.down()
        return ServiceStatus(self.name, "down", self.url, detail="external server: left running")
