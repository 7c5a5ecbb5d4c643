"""A monthly API call budget, persisted in Postgres so every worker and every run share one count."""

from __future__ import annotations

import datetime as dt

from psycopg import sql

from weatherpipe.errors import BudgetExceeded
from weatherpipe.resources import Warehouse
from weatherpipe.settings import Settings


class CallBudget:
    def __init__(
        self, warehouse: Warehouse, settings: Settings, provider: str = "openweather", limit: int | None = None
    ) -> None:
        self.warehouse = warehouse
        self.provider = provider
        self.limit = settings.api.monthly_call_budget if limit is None else limit
        self.table = sql.Identifier(settings.postgres.ops_schema, "api_call_budget")

    def _month(self) -> str:
        return dt.datetime.now(dt.UTC).strftime("%Y-%m")

    def used(self) -> int:
        with self.warehouse.connect() as conn:
            row = conn.execute(
                sql.SQL("select calls from {} where provider = %s and month = %s").format(self.table),
                (self.provider, self._month()),
            ).fetchone()
        return int(row[0]) if row else 0

    def ensure_room(self, calls: int) -> None:
        """Refuse (``BudgetExceeded``) a run that cannot afford ``calls`` more this month; reserves nothing."""
        used = self.used()
        if used + calls > self.limit:
            raise self._exceeded(calls, used)

    def _exceeded(self, calls: int, used: int) -> BudgetExceeded:
        return BudgetExceeded(
            f"{self.provider}: {calls} calls would exceed the monthly budget of {self.limit} "
            f"({used} already used in {self._month()})",
            hint="raise WEATHERPIPE_API__MONTHLY_CALL_BUDGET or wait for next month",
        )

    def reserve(self, calls: int) -> int:
        """Atomically add ``calls`` to this month's count, or refuse (nothing reserved) if it would overspend."""
        month = self._month()
        with self.warehouse.connect() as conn:
            conn.execute(
                sql.SQL("insert into {} (provider, month, calls) values (%s, %s, 0) on conflict do nothing").format(
                    self.table
                ),
                (self.provider, month),
            )
            row = conn.execute(
                sql.SQL(
                    "update {} set calls = calls + %s, updated_at = now() "
                    "where provider = %s and month = %s and calls + %s <= %s returning calls"
                ).format(self.table),
                (calls, self.provider, month, calls, self.limit),
            ).fetchone()
        if row is None:
            raise self._exceeded(calls, self.used())
        return int(row[0])
