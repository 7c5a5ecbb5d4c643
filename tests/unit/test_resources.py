"""Resources: built by the entry point, each on first use, shared by every stage of the run."""

from __future__ import annotations

import pytest

from tests.support import derive
from weatherpipe.resources import Resources
from weatherpipe.settings import load_settings


def test_building_resources_connects_to_nothing() -> None:
    # the unit layer fails any socket connect: making the resources and the clients must open none
    settings = derive(load_settings(_env_file=None), s3={"endpoint_url": "http://127.0.0.1:9"})
    res = Resources(settings)
    store, warehouse = res.store, res.warehouse
    assert res.store is store and res.warehouse is warehouse  # built once, then shared
    assert store.cfg.endpoint_url == "http://127.0.0.1:9"
    assert warehouse.pg == settings.postgres
    assert warehouse.transformer.pg.user == settings.postgres.transformer.user != settings.postgres.user


def test_a_stage_uses_the_resources_it_is_handed_and_refuses_another_configurations() -> None:
    settings = load_settings(_env_file=None)
    res = Resources(settings)
    assert Resources.of(settings, res) is res
    own = Resources.of(settings, None)  # a stage run on its own builds its own, from the settings it was given
    assert own is not res and own.settings is settings
    other_lake = derive(settings, s3={"bucket": "another-lake"})
    with pytest.raises(ValueError, match="other settings"):
        Resources.of(other_lake, res)
    # a change that does not touch the systems the resources reach is the same configuration
    assert Resources.of(derive(settings, kafka={"topic": "other"}), res) is res


def test_a_store_handed_in_is_the_one_used() -> None:
    settings = load_settings(_env_file=None)
    first = Resources(settings)
    assert Resources(settings, store=first.store).store is first.store
